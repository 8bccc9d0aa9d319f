//go:build linux

package runc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"

	"github.com/builderdev/builder/worker"
)

// TestCgroupPlacement checks that a sandbox has a cgroup of its own in the devices,
// pids and memory hierarchies, and stays in the builder's cgroup in the others.
func TestCgroupPlacement(t *testing.T) {
	e := newEnv(t)
	if cgroups.IsCgroup2UnifiedMode() {
		t.Skip("a cgroup v2 host has a single hierarchy")
	}
	own, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.run(t, worker.ExecSpec{Args: []string{"cat", "/proc/self/cgroup"}})
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("/builder/%d-", os.Getpid())
	var placed []string
	for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
		// hierarchy-id:controller-list:path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			t.Fatalf("malformed /proc/self/cgroup line %q", line)
		}
		ctrls, p := parts[1], parts[2]
		if strings.HasPrefix(p, prefix) {
			placed = append(placed, ctrls)
			continue
		}
		if p != own[ctrls] {
			t.Errorf("%s: sandbox in %s, want the builder's own %s", ctrls, p, own[ctrls])
		}
	}
	slices.Sort(placed)
	var want []string
	for _, c := range cgroupControllers {
		if _, ok := own[c]; ok {
			want = append(want, c)
		}
	}
	slices.Sort(want)
	if !slices.Equal(placed, want) {
		t.Errorf("sandbox cgroups in %v, want %v", placed, want)
	}
	for _, c := range want {
		left, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", c, prefix+"*"))
		if len(left) != 0 {
			t.Errorf("cgroups left after Run: %v", left)
		}
	}
}

// TestDeviceRules checks that the device cgroup is in force: a step may create device
// nodes (CAP_MKNOD) but open only the standard ones.
func TestDeviceRules(t *testing.T) {
	e := newEnv(t)
	// A host block device, which root could read without the device cgroup.
	disks, _ := filepath.Glob("/sys/dev/block/*:*")
	if len(disks) == 0 {
		t.Skip("no block device on this host")
	}
	var major, minor int
	for _, d := range disks {
		if _, err := fmt.Sscanf(filepath.Base(d), "%d:%d", &major, &minor); err != nil {
			t.Fatal(err)
		}
		if major != 7 { // prefer a disk to a loop device
			break
		}
	}
	script := strings.Join([]string{
		fmt.Sprintf("mknod /disk b %d %d || exit 1", major, minor),
		"head -c 1 /disk >/dev/null 2>/tmp/err && echo disk readable || cat /tmp/err",
		"mknod /null2 c 1 3 && echo x >/null2 && echo null writable",
		"head -c 4 /dev/zero | wc -c",
	}, "; ")
	got, err := e.run(t, worker.ExecSpec{Args: []string{"sh", "-c", script}})
	if err != nil {
		t.Fatal(err)
	}
	want := "head: /disk: Operation not permitted\nnull writable\n4\n"
	if got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
}

// TestCreateContainerExisting checks that a sandbox id in use is refused.
func TestCreateContainerExisting(t *testing.T) {
	e := newEnv(t)
	if e.exec.cgroupDirs == nil {
		t.Skip("cgroup v2 host: libcontainer.Create is used as is")
	}
	id, err := newID()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(e.exec.stateDir, id), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg, err := newConfig(sandboxConfig{id: id, rootfs: e.prepare(t).Root(), hostname: "x", cgroupParent: "/builder", hostnameFile: "/etc/hostname", resolvConf: "/etc/resolv.conf", hosts: "/etc/hosts"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := createContainer(e.exec.stateDir, id, cfg, e.exec.cgroupDirs); err == nil {
		t.Error("createContainer over an existing sandbox succeeded")
	}
	if _, err := os.Stat(filepath.Join(e.exec.stateDir, id)); err != nil {
		t.Errorf("existing state dir removed: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(e.exec.stateDir, id, "state.json"), &st); err == nil {
		t.Error("state written into an existing sandbox's dir")
	}
}

// TestCleanStaleNotStarted checks that CleanStale removes a sandbox whose builder died
// between creating it and starting it.
func TestCleanStaleNotStarted(t *testing.T) {
	e := newEnv(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%d-0123456789abcdef", dead.Process.Pid)
	cfg, err := newConfig(sandboxConfig{id: id, rootfs: e.prepare(t).Root(), hostname: "x", cgroupParent: "/builder", hostnameFile: "/etc/hostname", resolvConf: "/etc/resolv.conf", hosts: "/etc/hosts"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := createContainer(e.exec.stateDir, id, cfg, e.exec.cgroupDirs); err != nil {
		t.Fatal(err)
	}
	if err := e.exec.CleanStale(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.exec.stateDir, id)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale state dir left: %v", err)
	}
}
