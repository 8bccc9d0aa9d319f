package ops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sync/errgroup"

	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
)

func TestExecBindStage(t *testing.T) {
	f := newFixture(t).withBusybox(t)
	stage := f.layer(t, "stage", func(root string) error {
		writeTree(t, root, map[string]string{"data/hello": "hi from stage\n"})
		return nil
	})
	tests := []struct {
		name   string
		script string
		mount  llb.Mount
		want   map[string]string
	}{{
		name:   "read-only",
		script: `cp /mnt/hello /out && if touch /mnt/new 2>/dev/null; then echo writable; exit 1; fi`,
		mount:  llb.Mount{Type: llb.MountBind, Target: "/mnt", Source: "data"},
		want:   map[string]string{"out": "hi from stage\n"},
	}, {
		name:   "read-write",
		script: `echo changed > /mnt/data/hello && touch /mnt/new && cat /mnt/data/hello > /out`,
		mount:  llb.Mount{Type: llb.MountBind, Target: "/mnt", ReadWrite: true},
		want:   map[string]string{"out": "changed\n"},
	}, {
		name:   "file source",
		script: `cat /etc/greeting > /out`,
		mount:  llb.Mount{Type: llb.MountBind, Target: "/etc/greeting", Source: "/data/hello"},
		want:   map[string]string{"out": "hi from stage\n"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref := f.mustSolve(t, f.run(t, tc.script, []llb.Mount{tc.mount}, stage))
			got, _ := f.topLayer(t, ref)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("layer (-want +got):\n%s", diff)
			}
		})
	}
	// The read-write run wrote through the mount; the stage must not have changed.
	root, release, err := f.d.Snapshots.View(t.Context(), f.results[stage.Vertex().Digest()].Ref.SnapshotIDs())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if b, err := os.ReadFile(filepath.Join(root, "data/hello")); err != nil || string(b) != "hi from stage\n" {
		t.Errorf("stage data/hello = %q, %v after a read-write bind", b, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "new")); err == nil {
		t.Error("read-write bind wrote into the stage")
	}
}

func TestExecBindContext(t *testing.T) {
	f := newFixture(t).withBusybox(t)
	ctxDir := t.TempDir()
	writeTree(t, ctxDir, map[string]string{"keep.txt": "kept\n", "ignored.txt": "hidden\n", "sub/a": "a\n"})
	ignoring := f.local(t, "ctx", ctxDir, "ignored.txt")
	plain := f.local(t, "plain", ctxDir)
	tests := []struct {
		name   string
		script string
		mount  llb.Mount
		from   llb.State
		want   string
	}{{
		name:   "ignored file invisible",
		script: `ls /ctx > /out; if touch /ctx/x 2>/dev/null; then exit 1; fi`,
		mount:  llb.Mount{Type: llb.MountBind, Target: "/ctx"},
		from:   ignoring,
		want:   "keep.txt\nsub\n",
	}, {
		name:   "whole context read-only",
		script: `ls /ctx > /out; if touch /ctx/x 2>/dev/null; then exit 1; fi`,
		mount:  llb.Mount{Type: llb.MountBind, Target: "/ctx"},
		from:   plain,
		want:   "ignored.txt\nkeep.txt\nsub\n",
	}, {
		name:   "read-write writes a copy",
		script: `echo new > /ctx/keep.txt && touch /ctx/sub/b && ls /ctx/sub > /out`,
		mount:  llb.Mount{Type: llb.MountBind, Target: "/ctx", ReadWrite: true},
		from:   plain,
		want:   "a\nb\n",
	}, {
		name:   "subdir source",
		script: `ls /ctx > /out`,
		mount:  llb.Mount{Type: llb.MountBind, Target: "/ctx", Source: "sub"},
		from:   ignoring,
		want:   "a\n",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref := f.mustSolve(t, f.run(t, tc.script, []llb.Mount{tc.mount}, tc.from))
			got, _ := f.topLayer(t, ref)
			if diff := cmp.Diff(map[string]string{"out": tc.want}, got); diff != "" {
				t.Errorf("layer (-want +got):\n%s", diff)
			}
		})
	}
	if b, _ := os.ReadFile(filepath.Join(ctxDir, "keep.txt")); string(b) != "kept\n" {
		t.Errorf("context keep.txt = %q: a bind mount wrote the user's file", b)
	}
	if _, err := os.Lstat(filepath.Join(ctxDir, "sub/b")); err == nil {
		t.Error("a bind mount created sub/b in the user's context")
	}
	if n := dirEntries(t, f.d.TempDir); n != 0 {
		t.Errorf("%d entries left in the temp dir", n)
	}
}

func TestExecBindErrorNamesMount(t *testing.T) {
	f := newFixture(t).withBusybox(t)
	stage := f.layer(t, "stage", func(root string) error { return os.Mkdir(filepath.Join(root, "data"), 0o755) })
	st := f.run(t, "true", []llb.Mount{{Type: llb.MountBind, Target: "/mnt", Source: "missing"}}, stage)
	_, _, err := f.solve(t.Context(), st.Vertex())
	if err == nil || !strings.Contains(err.Error(), "mounting bind /mnt") {
		t.Fatalf("err = %v, want it to name the mount", err)
	}
}

func TestExecCacheMount(t *testing.T) {
	f := newFixture(t).withBusybox(t)
	cacheAt := func(target string) llb.Mount { return llb.Mount{Type: llb.MountCache, Target: target, CacheID: "c1"} }
	first := f.mustSolve(t, f.run(t, `echo one >> /var/cache/app/log && echo done > /out`, []llb.Mount{cacheAt("/var/cache/app")}))
	got, _ := f.topLayer(t, first)
	if diff := cmp.Diff(map[string]string{"out": "done\n"}, got); diff != "" {
		t.Errorf("first layer (-want +got): cache contents or mount point leaked:\n%s", diff)
	}
	// Another step, another target, same id: the same directory.
	second := f.mustSolve(t, f.run(t, `echo two >> /c/log && cp /c/log /out`, []llb.Mount{cacheAt("/c")}))
	got, _ = f.topLayer(t, second)
	if diff := cmp.Diff(map[string]string{"out": "one\ntwo\n"}, got); diff != "" {
		t.Errorf("second layer (-want +got):\n%s", diff)
	}

	t.Run("mode and owner of a new cache", func(t *testing.T) {
		m := llb.Mount{Type: llb.MountCache, Target: "/c", CacheID: "owned", Mode: ptr(uint32(0o700)), UID: ptr(uint32(1000)), GID: ptr(uint32(1000))}
		ref := f.mustSolve(t, f.run(t, `stat -c '%a %u:%g' /c > /out`, []llb.Mount{m}))
		got, _ := f.topLayer(t, ref)
		if got["out"] != "700 1000:1000\n" {
			t.Errorf("cache dir is %q, want 700 1000:1000", got["out"])
		}
	})
	t.Run("default mode and owner", func(t *testing.T) {
		ref := f.mustSolve(t, f.run(t, `stat -c '%a %u:%g' /c > /out`, []llb.Mount{{Type: llb.MountCache, Target: "/c", CacheID: "plain"}}))
		got, _ := f.topLayer(t, ref)
		if got["out"] != "755 0:0\n" {
			t.Errorf("cache dir is %q, want 755 0:0", got["out"])
		}
	})
	t.Run("seeded from a stage", func(t *testing.T) {
		stage := f.layer(t, "seed", func(root string) error {
			writeTree(t, root, map[string]string{"deps/lib.txt": "lib\n"})
			return nil
		})
		m := llb.Mount{Type: llb.MountCache, Target: "/c", CacheID: "seeded", Source: "deps"}
		ref := f.mustSolve(t, f.run(t, `cat /c/lib.txt > /out && echo more > /c/more`, []llb.Mount{m}, stage))
		got, _ := f.topLayer(t, ref)
		if got["out"] != "lib\n" {
			t.Errorf("seeded cache has lib.txt = %q", got["out"])
		}
		// An existing cache is not seeded again: what the last run wrote stays.
		ref = f.mustSolve(t, f.run(t, `cat /c/more > /out`, []llb.Mount{m}, stage))
		got, _ = f.topLayer(t, ref)
		if got["out"] != "more\n" {
			t.Errorf("second run sees more = %q", got["out"])
		}
	})
}

// TestExecCacheSharing runs two steps at once on one cache id. Both also share a
// rendezvous cache, and each waits there for the other, so they provably overlap
// (private) or provably cannot (locked: the second only starts after the first ends).
func TestExecCacheSharing(t *testing.T) {
	f := newFixture(t).withBusybox(t)
	run := func(t *testing.T, scripts [2]string, mounts []llb.Mount) [2]string {
		t.Helper()
		var out [2]string
		states := [2]llb.State{f.run(t, scripts[0], mounts), f.run(t, scripts[1], mounts)}
		var mu sync.Mutex
		g, ctx := errgroup.WithContext(t.Context())
		for i := range states {
			g.Go(func() error {
				r, _, err := f.solveConcurrent(ctx, &mu, states[i].Vertex())
				if err != nil {
					return err
				}
				got, _ := f.topLayer(t, r.Ref)
				out[i] = got["out"]
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		return out
	}

	t.Run("private", func(t *testing.T) {
		mounts := []llb.Mount{
			{Type: llb.MountCache, Target: "/sync", CacheID: "sync-private", Sharing: llb.SharingShared},
			{Type: llb.MountCache, Target: "/p", CacheID: "p", Sharing: llb.SharingPrivate},
		}
		script := func(me, other string) string {
			return fmt.Sprintf(`touch /p/%[1]s /sync/%[1]s; i=0; while [ ! -e /sync/%[2]s ]; do i=$((i+1)); [ $i -gt 600 ] && exit 7; sleep 0.05; done; ls /p > /out`, me, other)
		}
		out := run(t, [2]string{script("a", "b"), script("b", "a")}, mounts)
		if out != [2]string{"a\n", "b\n"} {
			t.Errorf("concurrent private caches hold %q, want each only its own file", out)
		}
	})
	t.Run("locked", func(t *testing.T) {
		mounts := []llb.Mount{{Type: llb.MountCache, Target: "/l", CacheID: "l", Sharing: llb.SharingLocked}}
		script := func(me string) string {
			return fmt.Sprintf(`echo start %[1]s >> /l/log; sleep 0.3; echo end %[1]s >> /l/log; cp /l/log /out`, me)
		}
		out := run(t, [2]string{script("a"), script("b")}, mounts)
		last := out[0]
		if len(out[1]) > len(last) {
			last = out[1]
		}
		if last != "start a\nend a\nstart b\nend b\n" && last != "start b\nend b\nstart a\nend a\n" {
			t.Errorf("locked cache log:\n%s\nwant one step after the other", last)
		}
	})
}

// solveConcurrent is solve for vertices whose inputs are solved, safe to call from
// several goroutines: mu guards f.results.
func (f *fixture) solveConcurrent(ctx context.Context, mu *sync.Mutex, v *llb.Vertex) (r solver.Result, logs string, err error) {
	mu.Lock()
	var inputs []solver.Result
	for _, in := range v.Inputs() {
		in, ok := f.results[in.Digest()]
		if !ok {
			mu.Unlock()
			return r, "", errors.New("input not solved")
		}
		inputs = append(inputs, in)
	}
	mu.Unlock()
	op, err := Resolver(f.d)(v)
	if err != nil {
		return r, "", err
	}
	var buf bytes.Buffer
	ref, err := op.Exec(ctx, inputs, &buf)
	if err != nil {
		return r, buf.String(), fmt.Errorf("%w (output: %s)", err, buf.String())
	}
	return solver.Result{Ref: ref}, buf.String(), nil
}

func TestExecTmpfs(t *testing.T) {
	f := newFixture(t).withBusybox(t)
	m := llb.Mount{Type: llb.MountTmpfs, Target: "/scratch/t", Size: 1 << 20}
	ref := f.mustSolve(t, f.run(t, `echo x > /scratch/t/f && awk '$2=="/scratch/t" {print $3, $4}' /proc/mounts > /out`, []llb.Mount{m}))
	got, _ := f.topLayer(t, ref)
	out := got["out"]
	if !strings.HasPrefix(out, "tmpfs ") || !strings.Contains(out, "size=1024k") {
		t.Errorf("/scratch/t mount: %q, want a 1 MiB tmpfs", out)
	}
	if _, ok := got["scratch"]; ok {
		t.Error("tmpfs mount point leaked into the layer")
	}
}

// secretStore is a SecretStore over a map, as the CLI's --secret store is.
type secretStore map[string][]byte

func (s secretStore) GetSecret(_ context.Context, id string) ([]byte, error) {
	if b, ok := s[id]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("secret %q: %w", id, ErrSecretNotFound)
}

func TestExecSecret(t *testing.T) {
	f := newFixture(t).withBusybox(t)
	const value = "s3cr3t-Value-4711"
	f.d.Secrets = secretStore{"tok": []byte(value)}
	mounts := []llb.Mount{
		{Type: llb.MountSecret, SecretID: "tok", Target: "/run/secrets/tok", Env: "TOKEN"},
		{Type: llb.MountSecret, SecretID: "tok", Target: "/etc/tok", Mode: ptr(uint32(0o440)), UID: ptr(uint32(1000)), GID: ptr(uint32(1000))},
		{Type: llb.MountSecret, SecretID: "absent", Target: "/run/secrets/absent"},
	}
	script := `set -e
test "$(cat /run/secrets/tok)" = "$TOKEN"
test "$(cat /etc/tok)" = "$TOKEN"
if echo x > /run/secrets/tok; then exit 3; fi
test ! -e /run/secrets/absent
stat -c '%a %u:%g' /run/secrets/tok /etc/tok > /out
echo ${#TOKEN} >> /out`
	ref := f.mustSolve(t, f.run(t, script, mounts))
	got, raw := f.topLayer(t, ref)
	want := map[string]string{"out": fmt.Sprintf("400 0:0\n440 1000:1000\n%d\n", len(value))}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layer (-want +got): mount points or secrets leaked:\n%s", diff)
	}
	if bytes.Contains(raw, []byte(value)) {
		t.Error("the secret's bytes are in the layer")
	}
	if n := dirEntries(t, f.d.TempDir); n != 0 {
		t.Errorf("%d entries left in the temp dir after the run (secret files)", n)
	}

	t.Run("env only", func(t *testing.T) {
		m := llb.Mount{Type: llb.MountSecret, SecretID: "tok", Env: "TOKEN"}
		ref := f.mustSolve(t, f.run(t, `test "$TOKEN" = `+value+` && test ! -e /run/secrets && echo ok > /out`, []llb.Mount{m}))
		if got, _ := f.topLayer(t, ref); got["out"] != "ok\n" {
			t.Errorf("out = %q", got["out"])
		}
	})
	t.Run("required missing", func(t *testing.T) {
		m := llb.Mount{Type: llb.MountSecret, SecretID: "absent", Target: "/run/secrets/absent", Required: true}
		_, _, err := f.solve(t.Context(), f.run(t, `true`, []llb.Mount{m}).Vertex())
		if !errors.Is(err, ErrSecretNotFound) || !strings.Contains(err.Error(), "mounting secret /run/secrets/absent") {
			t.Errorf("err = %v, want a not-found error naming the mount", err)
		}
	})
	t.Run("no store", func(t *testing.T) {
		f.d.Secrets = nil
		defer func() { f.d.Secrets = secretStore{"tok": []byte(value)} }()
		ref := f.mustSolve(t, f.run(t, `test ! -e /run/secrets/tok && echo skipped > /out`, []llb.Mount{{Type: llb.MountSecret, SecretID: "tok", Target: "/run/secrets/tok"}}))
		if got, _ := f.topLayer(t, ref); got["out"] != "skipped\n" {
			t.Errorf("out = %q", got["out"])
		}
	})
}

func TestExecSSH(t *testing.T) {
	f := newFixture(t).withBusybox(t)
	agent := listenAgent(t)
	f.d.SSH = map[string]string{"default": agent}
	mounts := []llb.Mount{
		{Type: llb.MountSSH, Target: "/run/buildkit/ssh_agent.0"},
		{Type: llb.MountSSH, SSHID: "deploy", Target: "/run/buildkit/ssh_agent.1"},
		{Type: llb.MountSSH, Target: "/tmp/agent", Mode: ptr(uint32(0o660)), UID: ptr(uint32(1000))},
	}
	ref := f.mustSolve(t, f.run(t, `test -S /run/buildkit/ssh_agent.0 && test ! -e /run/buildkit/ssh_agent.1 && stat -c '%a %u' /run/buildkit/ssh_agent.0 /tmp/agent > /out`, mounts))
	got, _ := f.topLayer(t, ref)
	if diff := cmp.Diff(map[string]string{"out": "600 0\n660 1000\n"}, got); diff != "" {
		t.Errorf("layer (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(agent); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("host agent socket changed: %v %v", fi.Mode(), err)
	}

	t.Run("required missing", func(t *testing.T) {
		m := llb.Mount{Type: llb.MountSSH, SSHID: "deploy", Target: "/run/buildkit/ssh_agent.0", Required: true}
		_, _, err := f.solve(t.Context(), f.run(t, `true`, []llb.Mount{m}).Vertex())
		if err == nil || !strings.Contains(err.Error(), "mounting ssh /run/buildkit/ssh_agent.0") || !strings.Contains(err.Error(), "deploy") {
			t.Errorf("err = %v, want it to name the mount and the id", err)
		}
	})
}

// listenAgent serves a unix socket that answers "pong:<request>" once per connection.
func listenAgent(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 64)
			n, _ := c.Read(buf)
			c.Write(append([]byte("pong:"), buf[:n]...))
			c.Close()
		}
	}()
	return p
}

func TestSSHProxyForwards(t *testing.T) {
	agent := listenAgent(t)
	p, err := startSSHProxy(filepath.Join(t.TempDir(), "proxy.sock"), agent, 0o600, os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"one", "two"} {
		c, err := net.Dial("unix", p.path)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(msg))
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		c.Close()
		if got := string(buf[:n]); got != "pong:"+msg {
			t.Errorf("reply = %q, want pong:%s", got, msg)
		}
	}
	// A connection still open when the proxy closes must not keep close waiting.
	idle, err := net.Dial("unix", p.path)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if err := p.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("unix", p.path); err == nil {
		t.Error("proxy still accepts after close")
	}
}

func TestExecMountStubsRemoved(t *testing.T) {
	f := newFixture(t).withBusybox(t)
	stage := f.layer(t, "stub-src", func(root string) error {
		writeTree(t, root, map[string]string{"f": "file\n", "d/": ""})
		return nil
	})
	mounts := []llb.Mount{
		{Type: llb.MountBind, Target: "/deep/a/b", Source: "d"},
		{Type: llb.MountBind, Target: "/tmp/file", Source: "f"},
		{Type: llb.MountTmpfs, Target: "/keep/t"},
	}
	// /keep gets a file of its own, so it stays (without the t stub); the rest goes.
	ref := f.mustSolve(t, f.run(t, `echo mine > /keep/own`, mounts, stage, stage, llb.Scratch()))
	got, _ := f.topLayer(t, ref)
	want := map[string]string{"keep": "<dir>", "keep/own": "mine\n"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layer (-want +got):\n%s", diff)
	}
}

func TestExecCacheKeyBindContext(t *testing.T) {
	f := newFixture(t)
	ctxDir := t.TempDir()
	writeTree(t, ctxDir, map[string]string{"src/main.go": "package main\n", "src/notes.log": "x\n", "other": "o\n"})
	st, err := f.local(t, "ctx", ctxDir, "**/*.log").RunMounts(llb.ExecOp{
		Args:   []string{"true"},
		Mounts: []llb.Mount{{Type: llb.MountBind, Target: "/src", Source: "src"}},
	}, []llb.State{f.local(t, "ctx", ctxDir, "**/*.log")}, llb.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	key := func() string {
		op, err := Resolver(f.d)(st.Vertex())
		if err != nil {
			t.Fatal(err)
		}
		local, err := Resolver(f.d)(st.Vertex().Inputs()[0])
		if err != nil {
			t.Fatal(err)
		}
		ref, err := local.Exec(t.Context(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		k, err := op.CacheKey(t.Context(), []solver.Result{{Ref: ref}})
		if err != nil {
			t.Fatal(err)
		}
		return k.String()
	}
	k0 := key()
	if k0 == "" {
		t.Fatal("no key for a context bind mount")
	}
	writeTree(t, ctxDir, map[string]string{"src/notes.log": "changed\n", "other": "changed\n"})
	if k := key(); k != k0 {
		t.Error("key changed with an ignored file or a file outside the mounted source")
	}
	writeTree(t, ctxDir, map[string]string{"src/main.go": "package main // changed\n"})
	if k := key(); k == k0 {
		t.Error("key did not change with a mounted context file")
	}
}

func dirEntries(t *testing.T, dir string) int {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}
