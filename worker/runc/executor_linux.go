//go:build linux

package runc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/builderdev/builder/internal/proc"
	"github.com/builderdev/builder/worker"
)

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Executor runs processes in libcontainer sandboxes. It is safe for concurrent use;
// every Run gets its own container.
type Executor struct {
	stateDir     string
	cgroupParent string
	cgroupDirs   cgroupDirs
	resolvConf   string
	hosts        string
}

var _ worker.Executor = (*Executor)(nil)

// Option configures an Executor.
type Option func(*options) error

type options struct {
	cgroupParent string
	resolvConf   string
	hosts        string
}

// WithCgroupParent sets the absolute cgroup path below which each sandbox gets its
// own cgroup (on cgroup v1, in the devices, pids and memory hierarchies). Default
// "/builder".
func WithCgroupParent(p string) Option {
	return func(o *options) error {
		if !path.IsAbs(p) {
			return fmt.Errorf("cgroup parent %q is not absolute", p)
		}
		o.cgroupParent = path.Clean(p)
		return nil
	}
}

// WithHostFiles sets the host files bind-mounted read-only onto the sandbox's
// /etc/resolv.conf and /etc/hosts. Defaults are the host's own.
func WithHostFiles(resolvConf, hosts string) Option {
	return func(o *options) error {
		o.resolvConf, o.hosts = resolvConf, hosts
		return nil
	}
}

// NewExecutor returns an Executor keeping libcontainer state below stateDir (for
// example <store>/run).
func NewExecutor(stateDir string, opts ...Option) (*Executor, error) {
	o := options{cgroupParent: "/builder", resolvConf: "/etc/resolv.conf", hosts: "/etc/hosts"}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("creating executor: %w", err)
		}
	}
	stateDir, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("creating executor: %w", err)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating executor: %w", err)
	}
	dirs, err := findCgroupDirs(o.cgroupParent)
	if err != nil {
		return nil, fmt.Errorf("creating executor: %w", err)
	}
	return &Executor{
		stateDir:     stateDir,
		cgroupParent: o.cgroupParent,
		cgroupDirs:   dirs,
		resolvConf:   o.resolvConf,
		hosts:        o.hosts,
	}, nil
}

// Run runs spec's process in a new sandbox and waits for it. A non-zero exit is a
// *worker.ExitError; cancelling ctx kills the sandbox and Run returns ctx's error.
// The container is always destroyed before Run returns.
func (e *Executor) Run(ctx context.Context, spec worker.ExecSpec) (retErr error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !filepath.IsAbs(spec.Rootfs) {
		return fmt.Errorf("running %v: rootfs %q is not absolute", spec.Args, spec.Rootfs)
	}
	if len(spec.Args) == 0 {
		return errors.New("running sandbox: no command")
	}
	defer func() {
		if retErr != nil && !errors.As(retErr, new(*worker.ExitError)) && ctx.Err() == nil {
			retErr = fmt.Errorf("running %v: %w", spec.Args, retErr)
		}
	}()

	u, err := resolveUser(spec.Rootfs, spec.User)
	if err != nil {
		return err
	}
	cwd := spec.Cwd
	if cwd == "" {
		cwd = "/"
	}
	cwd = path.Clean("/" + cwd)
	// MkdirAll in the rootfs resolves symlinks inside it, so a hostile image cannot
	// make us create directories on the host.
	if err := pathrs.MkdirAll(spec.Rootfs, cwd, 0o755); err != nil {
		return fmt.Errorf("creating working directory %s: %w", cwd, err)
	}
	hostname := spec.Hostname
	if hostname == "" {
		hostname = defaultHostname
	}

	id, err := newID()
	if err != nil {
		return err
	}
	// The hostname file lives in the container's state dir, which Destroy removes.
	hostnameFile := filepath.Join(e.stateDir, id, "hostname")
	cfg, err := newConfig(sandboxConfig{
		id:           id,
		rootfs:       spec.Rootfs,
		hostname:     hostname,
		network:      spec.Network,
		cgroupParent: e.cgroupParent,
		hostnameFile: hostnameFile,
		resolvConf:   e.resolvConf,
		hosts:        e.hosts,
		mounts:       spec.Mounts,
	})
	if err != nil {
		return err
	}
	c, err := createContainer(e.stateDir, id, cfg, e.cgroupDirs)
	if err != nil {
		return fmt.Errorf("creating sandbox: %w", err)
	}
	defer func() {
		if err := c.Destroy(); err != nil && retErr == nil {
			retErr = fmt.Errorf("destroying sandbox: %w", err)
		}
	}()
	if err := os.WriteFile(hostnameFile, []byte(hostname+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing hostname file: %w", err)
	}

	p := &libcontainer.Process{
		Args:             spec.Args,
		Env:              withDefaultPath(spec.Env),
		UID:              u.Uid,
		GID:              u.Gid,
		AdditionalGroups: u.Sgids,
		Cwd:              cwd,
		Stdout:           spec.Stdout,
		Stderr:           spec.Stderr,
		Init:             true,
	}
	if err := c.Run(p); err != nil {
		return fmt.Errorf("starting sandbox: %w", err)
	}
	stop, err := killOnCancel(ctx, p)
	if err != nil {
		c.Signal(unix.SIGKILL)
		p.Wait()
		return err
	}
	state, waitErr := p.Wait()
	stop()
	if err := ctx.Err(); err != nil {
		return err
	}
	return exitError(state, waitErr)
}

// killOnCancel kills the sandbox's init (and with it the pid namespace) when ctx is
// cancelled. It signals through a pidfd, so a pid reused after Wait is never hit.
func killOnCancel(ctx context.Context, p *libcontainer.Process) (stop func(), err error) {
	pid, err := p.Pid()
	if err != nil {
		return nil, fmt.Errorf("reading sandbox pid: %w", err)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("opening sandbox pidfd: %w", err)
	}
	var mu sync.Mutex
	closed := false
	stopAfter := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !closed {
			unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
		}
	})
	return func() {
		stopAfter()
		mu.Lock()
		defer mu.Unlock()
		closed = true
		unix.Close(pidfd)
	}, nil
}

// exitError turns the result of Wait into nil or a *worker.ExitError.
func exitError(state *os.ProcessState, waitErr error) error {
	if state == nil {
		if waitErr == nil {
			waitErr = errors.New("no exit status")
		}
		return fmt.Errorf("waiting for sandbox: %w", waitErr)
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok {
		switch {
		case ws.Signaled():
			return &worker.ExitError{Code: 128 + int(ws.Signal())}
		case ws.Exited() && ws.ExitStatus() != 0:
			return &worker.ExitError{Code: ws.ExitStatus()}
		case ws.Exited():
			return nil
		}
	}
	if waitErr != nil && !errors.As(waitErr, new(*exec.ExitError)) {
		return fmt.Errorf("waiting for sandbox: %w", waitErr)
	}
	if !state.Success() {
		return &worker.ExitError{Code: state.ExitCode()}
	}
	return nil
}

// newID returns "<pid>-<random>": unique across concurrent runs and processes, and
// naming the owner so that CleanStale can tell whose containers are left over.
func newID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("creating sandbox id: %w", err)
	}
	return strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b), nil
}

func withDefaultPath(env []string) []string {
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			return env
		}
	}
	return append(env[:len(env):len(env)], defaultPath)
}

// CleanStale destroys sandboxes left in the state dir by builder processes that no
// longer run (killed while a step ran): it kills what still runs in them and
// removes their cgroups and state. Sandboxes of live processes are left alone.
func (e *Executor) CleanStale(ctx context.Context) error {
	entries, err := os.ReadDir(e.stateDir)
	if err != nil {
		return fmt.Errorf("cleaning stale sandboxes: %w", err)
	}
	var errs []error
	for _, ent := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if pid := proc.Owner(ent.Name()); pid == 0 || proc.Alive(pid) {
			continue
		}
		c, err := libcontainer.Load(e.stateDir, ent.Name())
		if err != nil {
			// A state dir without state.json: Create ran, Run never saved state.
			if err := os.RemoveAll(filepath.Join(e.stateDir, ent.Name())); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := killAndWait(ctx, c); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := c.Destroy(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleaning stale sandboxes: %w", err)
	}
	return nil
}

// killAndWait kills a sandbox's init and waits until it is gone (or a zombie:
// its parent is dead, so someone else reaps it).
func killAndWait(ctx context.Context, c *libcontainer.Container) error {
	st, err := c.Status()
	if err != nil || st == libcontainer.Stopped {
		return nil
	}
	if err := c.Signal(unix.SIGKILL); err != nil {
		return fmt.Errorf("killing stale sandbox %s: %w", c.ID(), err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := c.Status(); err != nil || st == libcontainer.Stopped {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return fmt.Errorf("killing stale sandbox %s: still running", c.ID())
}
