//go:build linux

package runc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/configs/validate"
)

// cgroupControllers are the cgroup v1 controllers a sandbox gets a cgroup of its own
// in. devices enforces the device rules: CAP_MKNOD is granted, so without them a step
// could create a node for a host disk and read it. pids and memory are where per-step
// limits go. In every other hierarchy the sandbox stays in the builder's cgroup:
// libcontainer's Create makes and removes a cgroup in all of them (ten on a hybrid
// host), about 2 ms of the builder's CPU a run instead of 0.5 (most of it overlaps the
// sandbox's own start, so the wall-clock gain is smaller).
var cgroupControllers = []string{"devices", "pids", "memory"}

// cgroupDirs maps each controller of cgroupControllers that is mounted to the
// directory of the sandboxes' parent cgroup in its hierarchy. It is nil on a cgroup v2
// host, where a sandbox has a single cgroup and libcontainer's own placement costs
// nothing extra.
type cgroupDirs map[string]string

// findCgroupDirs locates parent (an absolute cgroup path) in the hierarchies of
// cgroupControllers. The devices controller is required.
func findCgroupDirs(parent string) (cgroupDirs, error) {
	if cgroups.IsCgroup2UnifiedMode() {
		return nil, nil
	}
	dirs := cgroupDirs{}
	for _, c := range cgroupControllers {
		mnt, err := cgroups.FindCgroupMountpoint("", c)
		if err != nil {
			if c == "devices" {
				return nil, fmt.Errorf("finding the devices cgroup: %w", err)
			}
			continue // a controller the kernel was booted without
		}
		dirs[c] = filepath.Join(mnt, parent)
	}
	return dirs, nil
}

// createContainer is libcontainer.Create with the sandbox's cgroups limited to dirs.
//
// Create places a container in every mounted hierarchy, and the cgroup paths of a
// container can only be chosen through the state it is loaded from. So on a cgroup v1
// host createContainer validates cfg as Create does, writes the state of a container
// that has not started (as libcontainer saves it, with the cgroup paths) and loads it:
// Load gives a stopped container whose cgroup manager knows only those paths, and Run
// starts it like a created one. The state is the same a builder killed before Run
// leaves behind, which CleanStale destroys.
func createContainer(stateDir, id string, cfg *configs.Config, dirs cgroupDirs) (_ *libcontainer.Container, retErr error) {
	if dirs == nil {
		return libcontainer.Create(stateDir, id, cfg)
	}
	if err := validate.Validate(cfg); err != nil {
		return nil, err
	}
	paths := make(map[string]string, len(dirs))
	for c, dir := range dirs {
		paths[c] = filepath.Join(dir, id)
	}
	st := libcontainer.State{
		BaseState: libcontainer.BaseState{
			ID:      id,
			Created: time.Now().UTC(),
			Config:  *cfg,
		},
		CgroupPaths:    paths,
		NamespacePaths: map[configs.NamespaceType]string{},
	}
	b, err := json.Marshal(&st)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(stateDir, id)
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, libcontainer.ErrExist
		}
		return nil, err
	}
	defer func() {
		if retErr != nil {
			os.RemoveAll(dir)
		}
	}()
	// The name libcontainer loads a container's state from.
	if err := os.WriteFile(filepath.Join(dir, "state.json"), b, 0o600); err != nil {
		return nil, err
	}
	// Load sees no init process and gives a stopped container.
	c, err := libcontainer.Load(stateDir, id)
	if err != nil {
		return nil, fmt.Errorf("loading sandbox state: %w", err)
	}
	return c, nil
}
