//go:build linux

package runc

import (
	"errors"
	"fmt"
	"os"
	"path"

	"github.com/opencontainers/cgroups"
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/builderdev/builder/worker"
)

// Network modes, the values of llb.NetworkHost and llb.NetworkNone (worker may not
// import llb).
const (
	networkHost = "host"
	networkNone = "none"
)

const defaultHostname = "builder"

// defaultCaps is Docker's default capability set.
var defaultCaps = []string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FSETID",
	"CAP_FOWNER",
	"CAP_MKNOD",
	"CAP_NET_RAW",
	"CAP_SETGID",
	"CAP_SETUID",
	"CAP_SETFCAP",
	"CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT",
	"CAP_KILL",
	"CAP_AUDIT_WRITE",
}

// Docker's masked and read-only paths: kernel interfaces a build step has no
// business reading or writing.
var (
	maskedPaths = []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
		"/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

func charDevice(path string, major, minor int64) *devices.Device {
	return &devices.Device{
		Path:     path,
		FileMode: 0o666,
		Rule:     devices.Rule{Type: devices.CharDevice, Major: major, Minor: minor, Permissions: "rwm", Allow: true},
	}
}

// standardDevices are created in the sandbox's /dev.
var standardDevices = []*devices.Device{
	charDevice("/dev/null", 1, 3),
	charDevice("/dev/zero", 1, 5),
	charDevice("/dev/full", 1, 7),
	charDevice("/dev/random", 1, 8),
	charDevice("/dev/urandom", 1, 9),
	charDevice("/dev/tty", 5, 0),
}

// deviceRules is the device cgroup: deny everything, then allow what Docker allows
// by default: mknod of any node (CAP_MKNOD is granted, and package managers create
// device nodes in images), the standard devices and ptys.
func deviceRules() []*devices.Rule {
	rules := []*devices.Rule{
		{Type: devices.WildcardDevice, Major: devices.Wildcard, Minor: devices.Wildcard, Permissions: "rwm", Allow: false},
		{Type: devices.CharDevice, Major: devices.Wildcard, Minor: devices.Wildcard, Permissions: "m", Allow: true},
		{Type: devices.BlockDevice, Major: devices.Wildcard, Minor: devices.Wildcard, Permissions: "m", Allow: true},
		{Type: devices.CharDevice, Major: 136, Minor: devices.Wildcard, Permissions: "rwm", Allow: true}, // /dev/pts/*
		{Type: devices.CharDevice, Major: 5, Minor: 2, Permissions: "rwm", Allow: true},                  // /dev/ptmx
	}
	for _, d := range standardDevices {
		rules = append(rules, &d.Rule)
	}
	return rules
}

// sandboxConfig is everything newConfig needs besides the spec.
type sandboxConfig struct {
	id           string
	rootfs       string
	hostname     string
	network      string
	cgroupParent string
	hostnameFile string // host file bind-mounted onto /etc/hostname
	resolvConf   string // host files bind-mounted onto /etc/resolv.conf and /etc/hosts
	hosts        string
	mounts       []worker.Mount // the spec's extra mounts, after the standard ones
}

// newConfig returns the libcontainer config of one sandbox.
//
// Seccomp is not set: libcontainer needs the "seccomp" build tag (and libseccomp) for
// a filter, and fails at run time without it. Adding Docker's default profile is a
// hardening step still to do.
func newConfig(sc sandboxConfig) (*configs.Config, error) {
	const noExecSuidDev = unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_NODEV
	roBind := unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

	namespaces := configs.Namespaces{
		{Type: configs.NEWNS},
		{Type: configs.NEWPID},
		{Type: configs.NEWUTS},
		{Type: configs.NEWIPC},
	}
	var networks []*configs.Network
	switch sc.network {
	case "", networkHost:
	case networkNone:
		namespaces = append(namespaces, configs.Namespace{Type: configs.NEWNET})
		// Without this entry lo stays down in the new namespace.
		networks = []*configs.Network{{Type: "loopback", Address: "127.0.0.1/0", Gateway: "localhost"}}
	default:
		return nil, fmt.Errorf("unknown network mode %q", sc.network)
	}

	var rlimit unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rlimit); err != nil {
		return nil, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	// Raising a hard limit needs CAP_SYS_RESOURCE, which root may lack (it does on
	// the VMs we run on), so never ask for more than we have.
	hard := min(uint64(1<<20), rlimit.Max)
	soft := min(uint64(1024), hard)

	mounts := []*configs.Mount{
		{Source: "proc", Destination: "/proc", Device: "proc", Flags: noExecSuidDev},
		{Source: "tmpfs", Destination: "/dev", Device: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_STRICTATIME, Data: "mode=755,size=65536k"},
		{Source: "devpts", Destination: "/dev/pts", Device: "devpts", Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{Source: "shm", Destination: "/dev/shm", Device: "tmpfs", Flags: noExecSuidDev, Data: "mode=1777,size=65536k"},
		{Source: "mqueue", Destination: "/dev/mqueue", Device: "mqueue", Flags: noExecSuidDev},
		{Source: "sysfs", Destination: "/sys", Device: "sysfs", Flags: noExecSuidDev | unix.MS_RDONLY},
		{Source: sc.resolvConf, Destination: "/etc/resolv.conf", Device: "bind", Flags: roBind},
		{Source: sc.hosts, Destination: "/etc/hosts", Device: "bind", Flags: roBind},
		{Source: sc.hostnameFile, Destination: "/etc/hostname", Device: "bind", Flags: roBind},
	}
	for _, m := range sc.mounts {
		cm, err := extraMount(m)
		if err != nil {
			return nil, err
		}
		mounts = append(mounts, cm)
	}

	return &configs.Config{
		Rootfs:          sc.rootfs,
		Hostname:        sc.hostname,
		NoNewPrivileges: true,
		Namespaces:      namespaces,
		Networks:        networks,
		Capabilities: &configs.Capabilities{
			Bounding:  defaultCaps,
			Effective: defaultCaps,
			Permitted: defaultCaps,
		},
		Mounts:        mounts,
		Devices:       standardDevices,
		MaskPaths:     maskedPaths,
		ReadonlyPaths: readonlyPaths,
		Cgroups: &cgroups.Cgroup{
			// An absolute path keeps the cgroupfs manager from nesting it below this
			// process's own cgroup.
			Path:      path.Join(sc.cgroupParent, sc.id),
			Resources: &cgroups.Resources{Devices: deviceRules()},
		},
		Rlimits: []configs.Rlimit{{Type: unix.RLIMIT_NOFILE, Hard: hard, Soft: soft}},
	}, nil
}

// extraMount turns one of a spec's mounts into libcontainer's form.
//
// libcontainer creates a missing target itself, inside the sandbox's mount namespace
// after the mounts before it (so a target inside an earlier mount is created there),
// resolving symlinks as if the rootfs were / (so an image's symlink cannot point a
// mount outside the rootfs), and as an empty file when the bind source is not a
// directory.
func extraMount(m worker.Mount) (*configs.Mount, error) {
	if !path.IsAbs(m.Target) {
		return nil, fmt.Errorf("mount target %q is not absolute", m.Target)
	}
	target := path.Clean(m.Target)
	if target == "/" {
		return nil, errors.New("mount target is the root")
	}
	switch m.Type {
	case worker.MountBind:
		if !path.IsAbs(m.Source) {
			return nil, fmt.Errorf("bind source %q of %s is not absolute", m.Source, target)
		}
		// Checked here for a clear error: libcontainer's own is far from the cause.
		if _, err := os.Stat(m.Source); err != nil {
			return nil, fmt.Errorf("checking bind source of %s: %w", target, err)
		}
		cm := &configs.Mount{
			Source:      m.Source,
			Destination: target,
			Device:      "bind",
			Flags:       unix.MS_BIND | unix.MS_REC,
			// Mounts below the source come along (rbind), but nothing the sandbox
			// mounts there propagates back to the host, nor the other way round.
			PropagationFlags: []int{unix.MS_PRIVATE | unix.MS_REC},
		}
		if m.ReadOnly {
			// MS_RDONLY makes libcontainer remount the bind read-only, but only its
			// top mount: the recursive attribute covers the mounts below it too.
			cm.Flags |= unix.MS_RDONLY
			cm.RecAttr = &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		}
		return cm, nil
	case worker.MountTmpfs:
		if m.Size < 0 {
			return nil, fmt.Errorf("negative tmpfs size %d for %s", m.Size, target)
		}
		// As BuildKit's tmpfs mounts: nosuid, and the mode of an existing target
		// (libcontainer copies it), else tmpfs's own 1777.
		cm := &configs.Mount{Source: "tmpfs", Destination: target, Device: "tmpfs", Flags: unix.MS_NOSUID}
		if m.Size > 0 {
			cm.Data = fmt.Sprintf("size=%d", m.Size)
		}
		if m.ReadOnly {
			cm.Flags |= unix.MS_RDONLY
		}
		return cm, nil
	default:
		return nil, fmt.Errorf("unknown mount type %q for %s", m.Type, target)
	}
}
