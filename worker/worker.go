// Package worker defines how builder runs things: the Executor contract that runs one
// process in a sandbox over a mounted root filesystem. Implementations live below it
// (worker/runc); layer diffing and applying live in worker/diff.
package worker

import (
	"context"
	"fmt"
	"io"
)

// ExecSpec is one process to run in a sandbox.
type ExecSpec struct {
	// Rootfs is the absolute path of the already-mounted root filesystem. The executor
	// mounts /proc, /dev, /dev/pts, /dev/shm and /sys inside it and removes them again;
	// the mount points themselves must already exist (the snapshotter's init layer
	// provides them) so that nothing of the sandbox leaks into a layer.
	Rootfs string
	// Args is the command; Args[0] is looked up in PATH from Env when not absolute.
	Args []string
	// Env is KEY=VALUE; a PATH default is added when missing.
	Env []string
	// Cwd is the working directory inside the sandbox; created if missing. Default "/".
	Cwd string
	// User is "", "name", "uid", "name:group" or "uid:gid", resolved against the
	// rootfs's /etc/passwd and /etc/group. Empty means root.
	User string
	// Network is llb.NetworkHost (share the host's network) or llb.NetworkNone (only lo).
	Network string
	// Hostname of the sandbox; default "builder".
	Hostname string
	// Stdout and Stderr receive the process output; nil discards it.
	Stdout, Stderr io.Writer
	// Mounts are added on top of Rootfs, in order (a later target may lie inside an
	// earlier one). A missing target is created in Rootfs (a directory, or an empty file
	// when a bind Source is a file or socket); the caller removes such stubs afterwards.
	Mounts []Mount
}

// Mount types of an ExecSpec.
const (
	MountBind  = "bind"
	MountTmpfs = "tmpfs"
)

// Mount is one extra mount of a sandbox.
type Mount struct {
	Type string // MountBind or MountTmpfs
	// Source is the host path of a bind mount (a directory, file or unix socket).
	Source string
	// Target is the absolute path inside the sandbox.
	Target   string
	ReadOnly bool
	// Size limits a tmpfs in bytes; 0 is the kernel default.
	Size int64
}

// Executor runs processes in sandboxes. Run returns nil only if the process exited 0; a
// non-zero exit is an *ExitError. Cancelling ctx kills the process and its sandbox.
type Executor interface {
	Run(ctx context.Context, spec ExecSpec) error
}

// ExitError reports a process that ran and exited non-zero (or was killed by a signal,
// then Code is 128+signal).
type ExitError struct {
	Code int
}

func (e *ExitError) Error() string { return fmt.Sprintf("process exited with code %d", e.Code) }
