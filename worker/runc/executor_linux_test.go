//go:build linux

package runc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/builderdev/builder/cache/snapshot"
	"github.com/builderdev/builder/worker"

	"github.com/builderdev/builder/internal/testutil"
)

const busybox = "/bin/busybox"

// env is a snapshotter holding a busybox base layer, and an executor.
type env struct {
	sn   *snapshot.Snapshotter
	exec *Executor
	base []string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	testutil.RequiresRoot(t)
	if _, err := os.Stat(busybox); err != nil {
		t.Skipf("needs Debian's busybox-static: %v", err)
	}
	dir := t.TempDir()
	sn, err := snapshot.New(filepath.Join(dir, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewExecutor(filepath.Join(dir, "run"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	in, err := sn.Ingest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Discard(ctx)
	if err := writeBusybox(in.UpperDir()); err != nil {
		t.Fatal(err)
	}
	if err := in.Commit(ctx, "base"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ms, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
		for _, m := range ms {
			t.Errorf("left mounted: %s", m.Mountpoint)
			unix.Unmount(m.Mountpoint, unix.MNT_DETACH)
		}
	})
	return &env{sn: sn, exec: e, base: []string{"base"}}
}

// writeBusybox fills root with busybox, a symlink per applet, and testdata's
// passwd and group files.
func writeBusybox(root string) error {
	for _, d := range []string{"bin", "etc", "tmp"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777|fs.ModeSticky); err != nil {
		return err
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755); err != nil {
		return err
	}
	list, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("listing busybox applets: %w", err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			return err
		}
	}
	for _, f := range []string{"passwd", "group"} {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, "etc", f), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// prepare mounts a fresh rw overlay of the base with the init layer.
func (e *env) prepare(t testing.TB) *snapshot.Active {
	t.Helper()
	a, err := e.sn.Prepare(t.Context(), e.base, snapshot.WithInitLayer())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Discard(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return a
}

// run runs args in a fresh sandbox and returns its stdout.
func (e *env) run(t testing.TB, spec worker.ExecSpec) (string, error) {
	t.Helper()
	if spec.Rootfs == "" {
		spec.Rootfs = e.prepare(t).Root()
	}
	var stdout, stderr bytes.Buffer
	spec.Stdout, spec.Stderr = &stdout, &stderr
	err := e.exec.Run(t.Context(), spec)
	if stderr.Len() > 0 {
		t.Logf("stderr of %v: %s", spec.Args, stderr.String())
	}
	return stdout.String(), err
}

func TestRunOutput(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name     string
		args     []string
		hostname string
		want     string
	}{
		{name: "echo", args: []string{"echo", "hello"}, want: "hello\n"},
		{name: "absolute path", args: []string{"/bin/echo", "a", "b"}, want: "a b\n"},
		{name: "default hostname", args: []string{"sh", "-c", "hostname; cat /etc/hostname"}, want: "builder\nbuilder\n"},
		{name: "hostname", args: []string{"hostname"}, hostname: "step1", want: "step1\n"},
		{name: "pid namespace", args: []string{"ps", "-o", "pid,comm"}, want: "PID COMMAND 1 ps"},
		{name: "home from passwd", args: []string{"sh", "-c", "echo $HOME"}, want: "/root\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.run(t, worker.ExecSpec{Args: tc.args, Hostname: tc.hostname})
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "pid namespace" {
				got = strings.Join(strings.Fields(got), " ")
			}
			if got != tc.want {
				t.Errorf("stdout = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStderr(t *testing.T) {
	e := newEnv(t)
	var stdout, stderr bytes.Buffer
	err := e.exec.Run(t.Context(), worker.ExecSpec{
		Rootfs: e.prepare(t).Root(),
		Args:   []string{"sh", "-c", "echo out; echo err >&2"},
		Stdout: &stdout, Stderr: &stderr,
	})
	if err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "out\n" || stderr.String() != "err\n" {
		t.Errorf("stdout %q stderr %q, want out and err", stdout.String(), stderr.String())
	}
	// Nil writers discard.
	if err := e.exec.Run(t.Context(), worker.ExecSpec{Rootfs: e.prepare(t).Root(), Args: []string{"echo", "x"}}); err != nil {
		t.Errorf("nil stdout: %v", err)
	}
}

func TestExitCode(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name string
		args []string
		want int
	}{
		{name: "exit 3", args: []string{"sh", "-c", "exit 3"}, want: 3},
		{name: "false", args: []string{"false"}, want: 1},
		// pid 1 ignores its own signals, so kill a child and pass its status on.
		{name: "child killed", args: []string{"sh", "-c", "sh -c 'kill -9 $$'; exit $?"}, want: 137},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.run(t, worker.ExecSpec{Args: tc.args})
			var ee *worker.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("Run = %v, want an *ExitError", err)
			}
			if ee.Code != tc.want {
				t.Errorf("exit code = %d, want %d", ee.Code, tc.want)
			}
		})
	}
	t.Run("not found", func(t *testing.T) {
		_, err := e.run(t, worker.ExecSpec{Args: []string{"no-such-command"}})
		if err == nil || errors.As(err, new(*worker.ExitError)) || !strings.Contains(err.Error(), "no-such-command") {
			t.Errorf("Run = %v, want a start error naming the command", err)
		}
	})
}

func TestExitErrorSignal(t *testing.T) {
	cmd := exec.Command("sh", "-c", "kill -9 $$")
	waitErr := cmd.Run()
	err := exitError(cmd.ProcessState, waitErr)
	var ee *worker.ExitError
	if !errors.As(err, &ee) || ee.Code != 137 {
		t.Errorf("exitError = %v, want code 137", err)
	}
	if err := exitError(nil, errors.New("boom")); err == nil || errors.As(err, &ee) {
		t.Errorf("exitError(nil state) = %v, want a plain error", err)
	}
}

func TestEnvAndCwd(t *testing.T) {
	e := newEnv(t)
	a := e.prepare(t)
	got, err := e.run(t, worker.ExecSpec{
		Rootfs: a.Root(),
		Args:   []string{"sh", "-c", "echo $FOO; pwd; echo $PATH"},
		Env:    []string{"FOO=bar baz"},
		Cwd:    "/work/dir",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "bar baz\n/work/dir\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(filepath.Join(a.UpperDir(), "work/dir")); err != nil || !fi.IsDir() {
		t.Errorf("cwd not created in the upper dir: %v", err)
	}

	got, err = e.run(t, worker.ExecSpec{Args: []string{"sh", "-c", "echo $PATH"}, Env: []string{"PATH=/bin"}})
	if err != nil {
		t.Fatal(err)
	}
	if got != "/bin\n" {
		t.Errorf("PATH = %q, want the given /bin", got)
	}
}

func TestCwdSymlinkStaysInRootfs(t *testing.T) {
	e := newEnv(t)
	a := e.prepare(t)
	// /tmp exists on the host and in the rootfs: the symlink must resolve in the
	// rootfs.
	if err := os.Symlink("/tmp", filepath.Join(a.Root(), "escape")); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Base(t.TempDir()) + "-cwd"
	got, err := e.run(t, worker.ExecSpec{Rootfs: a.Root(), Args: []string{"pwd"}, Cwd: "/escape/" + sub})
	if err != nil {
		t.Fatal(err)
	}
	if want := "/tmp/" + sub + "\n"; got != want {
		t.Errorf("pwd = %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join("/tmp", sub)); !errors.Is(err, fs.ErrNotExist) {
		os.Remove(filepath.Join("/tmp", sub))
		t.Errorf("cwd created on the host: %v", err)
	}
	if _, err := os.Stat(filepath.Join(a.Root(), "tmp", sub)); err != nil {
		t.Errorf("cwd not created in the rootfs: %v", err)
	}
	// A symlink to a host-only dir resolves inside the rootfs too.
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(a.Root(), "escape2")); err != nil {
		t.Fatal(err)
	}
	e.run(t, worker.ExecSpec{Rootfs: a.Root(), Args: []string{"true"}, Cwd: "/escape2/sub"})
	if _, err := os.Stat(filepath.Join(outside, "sub")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("cwd created outside the rootfs: %v", err)
	}
}

func TestUser(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name    string
		user    string
		want    string // id -u, id -g, id -G
		wantErr string
	}{
		{name: "default root", user: "", want: "0\n0\n0\n"},
		{name: "by name", user: "builder", want: "1000\n1000\n1000 2000\n"},
		{name: "name and group", user: "builder:extra", want: "1000\n2000\n2000\n"},
		{name: "uid:gid", user: "1234:5678", want: "1234\n5678\n5678\n"},
		{name: "uid only", user: "4321", want: "4321\n0\n0\n"},
		{name: "unknown name", user: "ghost", wantErr: `"ghost"`},
		{name: "unknown group", user: "builder:ghosts", wantErr: "ghosts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.run(t, worker.ExecSpec{Args: []string{"sh", "-c", "id -u; id -g; id -G"}, User: tc.user})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Run = %v, want an error containing %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("ids = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestResolveUserWithoutPasswd(t *testing.T) {
	root := t.TempDir()
	u, err := resolveUser(root, "1000:1000")
	if err != nil {
		t.Fatal(err)
	}
	if u.Uid != 1000 || u.Gid != 1000 {
		t.Errorf("user = %+v, want 1000:1000", u)
	}
	if _, err := resolveUser(root, "alice"); err == nil || !strings.Contains(err.Error(), "alice") {
		t.Errorf("resolveUser(alice) = %v, want an error naming alice", err)
	}
}

// interfaces lists the interface names in a /proc/net/dev text.
func interfaces(procNetDev string) []string {
	var out []string
	for _, line := range strings.Split(procNetDev, "\n") {
		name, _, ok := strings.Cut(line, ":")
		if ok && !strings.Contains(name, "|") {
			out = append(out, strings.TrimSpace(name))
		}
	}
	slices.Sort(out)
	return out
}

func TestNetwork(t *testing.T) {
	e := newEnv(t)
	host, err := os.ReadFile("/proc/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	hostResolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		network string
		want    []string
	}{
		{network: "none", want: []string{"lo"}},
		{network: "host", want: interfaces(string(host))},
		{network: "", want: interfaces(string(host))},
	}
	for _, tc := range tests {
		t.Run("network="+tc.network, func(t *testing.T) {
			got, err := e.run(t, worker.ExecSpec{Args: []string{"cat", "/proc/net/dev"}, Network: tc.network})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, interfaces(got)); diff != "" {
				t.Errorf("interfaces (-want +got):\n%s", diff)
			}
			got, err = e.run(t, worker.ExecSpec{Args: []string{"cat", "/etc/resolv.conf"}, Network: tc.network})
			if err != nil {
				t.Fatal(err)
			}
			if got != string(hostResolv) {
				t.Errorf("resolv.conf = %q, want the host's", got)
			}
		})
	}
	t.Run("lo is up", func(t *testing.T) {
		got, err := e.run(t, worker.ExecSpec{Args: []string{"ping", "-c", "1", "-W", "2", "127.0.0.1"}, Network: "none"})
		if err != nil {
			t.Fatalf("ping 127.0.0.1: %v (%s)", err, got)
		}
	})
	if _, err := e.run(t, worker.ExecSpec{Args: []string{"true"}, Network: "bridge"}); err == nil {
		t.Error("unknown network mode accepted")
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	err := e.exec.Run(ctx, worker.ExecSpec{Rootfs: e.prepare(t).Root(), Args: []string{"sleep", "100"}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancelled Run took %v", d)
	}
	entries, _ := os.ReadDir(e.exec.stateDir)
	if len(entries) != 0 {
		t.Errorf("state dir not empty after a cancelled Run: %v", entries)
	}
}

func TestNothingLeaks(t *testing.T) {
	e := newEnv(t)
	a := e.prepare(t)
	if _, err := e.run(t, worker.ExecSpec{Rootfs: a.Root(), Args: []string{"sh", "-c", "ls /dev/null /dev/shm /dev/pts /proc/self /sys/kernel >/dev/null && touch /new"}}); err != nil {
		t.Fatal(err)
	}
	// The sandbox's mounts lived in its mount namespace: only the overlay remains.
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(a.Root()))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Mountpoint != a.Root() {
		for _, m := range ms {
			t.Errorf("mounted after Run: %s (%s)", m.Mountpoint, m.FSType)
		}
	}
	if err := a.Unmount(t.Context()); err != nil {
		t.Fatal(err)
	}
	var upper []string
	filepath.WalkDir(a.UpperDir(), func(p string, d fs.DirEntry, err error) error {
		if rel, _ := filepath.Rel(a.UpperDir(), p); rel != "." {
			upper = append(upper, rel)
		}
		return err
	})
	if diff := cmp.Diff([]string{"new"}, upper); diff != "" {
		t.Errorf("upper dir (-want +got):\n%s", diff)
	}
	entries, _ := os.ReadDir(e.exec.stateDir)
	if len(entries) != 0 {
		t.Errorf("state dir not empty after Run: %v", entries)
	}
	cgs, _ := filepath.Glob(fmt.Sprintf("/sys/fs/cgroup/*/builder/%d-*", os.Getpid()))
	if len(cgs) != 0 {
		t.Errorf("cgroups left after Run: %v", cgs)
	}
}

func TestConcurrentRuns(t *testing.T) {
	e := newEnv(t)
	const n = 4
	outs := make([]string, n)
	errs := make([]error, n)
	roots := make([]string, n)
	for i := range n {
		roots[i] = e.prepare(t).Root()
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var out bytes.Buffer
			errs[i] = e.exec.Run(t.Context(), worker.ExecSpec{
				Rootfs: roots[i],
				Args:   []string{"sh", "-c", fmt.Sprintf("sleep 0.2; echo %d", i)},
				Stdout: &out,
			})
			outs[i] = out.String()
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("run %d: %v", i, errs[i])
		} else if want := fmt.Sprintf("%d\n", i); outs[i] != want {
			t.Errorf("run %d stdout = %q, want %q", i, outs[i], want)
		}
	}
}

func TestCleanStale(t *testing.T) {
	e := newEnv(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%d-0123456789abcdef", dead.Process.Pid)
	root := e.prepare(t).Root()
	hostname := filepath.Join(t.TempDir(), "hostname")
	if err := os.WriteFile(hostname, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := newConfig(sandboxConfig{id: id, rootfs: root, hostname: "x", cgroupParent: "/builder", hostnameFile: hostname, resolvConf: "/etc/resolv.conf", hosts: "/etc/hosts"})
	if err != nil {
		t.Fatal(err)
	}
	// A sandbox as a SIGKILLed builder leaves it: still running, its owner gone.
	c, err := libcontainer.Create(e.exec.stateDir, id, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := &libcontainer.Process{Args: []string{"sleep", "100"}, Env: []string{defaultPath}, Cwd: "/", Init: true}
	if err := c.Run(p); err != nil {
		c.Destroy()
		t.Fatal(err)
	}
	// And one of a live process, which must survive.
	live := filepath.Join(e.exec.stateDir, fmt.Sprintf("%d-live", os.Getpid()))
	if err := os.Mkdir(live, 0o700); err != nil {
		t.Fatal(err)
	}

	// The test is the sandbox's parent and must reap it, as init would for a
	// builder that died.
	done := make(chan error, 1)
	go func() { _, err := p.Wait(); done <- err }()
	if err := e.exec.CleanStale(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.Signal(os.Kill)
		t.Fatal("stale sandbox still running after CleanStale")
	}
	if _, err := os.Stat(filepath.Join(e.exec.stateDir, id)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale state dir left: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("live state dir removed: %v", err)
	}
}

// BenchmarkRunTrue measures a RUN step's overhead: overlay, sandbox, unmount. Besides
// wall time it reports the CPU time of the builder and the sandbox's processes, which
// depends less on what else the machine runs.
func BenchmarkRunTrue(b *testing.B) { benchmarkRun(b, "") }

// BenchmarkRunTrueNetworkNone adds the cost of a network namespace with lo up.
func BenchmarkRunTrueNetworkNone(b *testing.B) { benchmarkRun(b, "none") }

func benchmarkRun(b *testing.B, network string) {
	e := newEnv(b)
	ctx := b.Context()
	cpu0 := cpuTime()
	for b.Loop() {
		a, err := e.sn.Prepare(ctx, e.base, snapshot.WithInitLayer())
		if err != nil {
			b.Fatal(err)
		}
		if err := e.exec.Run(ctx, worker.ExecSpec{Rootfs: a.Root(), Args: []string{"true"}, Network: network}); err != nil {
			b.Fatal(err)
		}
		if err := a.Discard(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// cpuTime is the CPU time of this process and of its waited-for children.
func cpuTime() time.Duration {
	var self, children unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &self)
	unix.Getrusage(unix.RUSAGE_CHILDREN, &children)
	var d int64
	for _, t := range []unix.Timeval{self.Utime, self.Stime, children.Utime, children.Stime} {
		d += t.Nano()
	}
	return time.Duration(d)
}
