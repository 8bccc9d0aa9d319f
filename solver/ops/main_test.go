package ops

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/snapshot"
	"github.com/builderdev/builder/internal/testutil"
	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
	"github.com/builderdev/builder/worker/diff"
	"github.com/builderdev/builder/worker/runc"
)

// TestMain doubles as the sandbox's init: libcontainer re-executes this test binary
// with the argument "init".
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		runc.Init()
	}
	os.Exit(m.Run())
}

const busybox = "/bin/busybox"

// fixture is a store with a busybox base layer, the real sandbox and a way to run llb
// vertices through Resolver with their inputs solved first.
type fixture struct {
	dir     string
	d       Deps
	base    llb.State
	results map[digest.Digest]solver.Result
}

// newFixture needs root; sandboxed tests also need busybox (withBusybox).
func newFixture(t *testing.T) *fixture {
	t.Helper()
	testutil.RequiresRoot(t)
	dir := t.TempDir()
	sn, err := snapshot.New(filepath.Join(dir, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	ex, err := runc.NewExecutor(filepath.Join(dir, "run"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"tmp", "cache-mounts"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{
		dir: dir,
		d: Deps{
			Content:     testutil.ContentStore(t),
			Snapshots:   sn,
			Executor:    ex,
			Locals:      map[string]string{},
			CacheMounts: filepath.Join(dir, "cache-mounts"),
			TempDir:     filepath.Join(dir, "tmp"),
		},
		results: map[digest.Digest]solver.Result{},
	}
	t.Cleanup(func() {
		ms, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
		for _, m := range ms {
			t.Errorf("left mounted: %s", m.Mountpoint)
			unix.Unmount(m.Mountpoint, unix.MNT_DETACH)
		}
	})
	return f
}

// withBusybox gives the fixture a busybox base image.
func (f *fixture) withBusybox(t *testing.T) *fixture {
	t.Helper()
	if _, err := os.Stat(busybox); err != nil {
		t.Skipf("needs Debian's busybox-static: %v", err)
	}
	f.base = f.layer(t, "busybox", writeBusybox)
	return f
}

// layer makes an image-like state whose result is one layer written by fill.
func (f *fixture) layer(t *testing.T, name string, fill func(root string) error) llb.State {
	t.Helper()
	ctx := t.Context()
	a, err := f.d.Snapshots.Ingest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Discard(ctx)
	if err := fill(a.UpperDir()); err != nil {
		t.Fatal(err)
	}
	l, _, err := diff.WriteLayer(ctx, f.d.Content, a.UpperDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(ctx, cache.SnapshotID(l.DiffID)); err != nil {
		t.Fatal(err)
	}
	st, err := llb.Image("test/"+name, llb.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	f.results[st.Vertex().Digest()] = solver.Result{Key: digest.FromString(name + l.DiffID.String()), Ref: cache.Ref{Layers: []cache.Layer{l}}}
	return st
}

// local registers dir as local source name.
func (f *fixture) local(t *testing.T, name, dir string, ignore ...string) llb.State {
	t.Helper()
	f.d.Locals[name] = dir
	var attrs map[string]string
	if len(ignore) > 0 {
		b, err := json.Marshal(ignore)
		if err != nil {
			t.Fatal(err)
		}
		attrs = map[string]string{llb.AttrLocalExcludes: string(b)}
	}
	st, err := llb.Source(llb.LocalScheme+name, attrs, llb.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// solve runs v and whatever it needs that has no result yet; it returns v's result and
// the op's output.
func (f *fixture) solve(ctx context.Context, v *llb.Vertex) (solver.Result, string, error) {
	if r, ok := f.results[v.Digest()]; ok {
		return r, "", nil
	}
	var inputs []solver.Result
	for _, in := range v.Inputs() {
		r, _, err := f.solve(ctx, in)
		if err != nil {
			return solver.Result{}, "", err
		}
		inputs = append(inputs, r)
	}
	op, err := Resolver(f.d)(v)
	if err != nil {
		return solver.Result{}, "", err
	}
	extra, err := op.CacheKey(ctx, inputs)
	if err != nil {
		return solver.Result{}, "", err
	}
	var logs bytes.Buffer
	ref, err := op.Exec(ctx, inputs, &logs)
	if err != nil {
		return solver.Result{}, logs.String(), fmt.Errorf("%w (output: %s)", err, logs.String())
	}
	keys := []string{v.Digest().String(), extra.String()}
	for _, in := range inputs {
		keys = append(keys, in.Key.String())
	}
	r := solver.Result{Key: digest.FromString(strings.Join(keys, " ")), Ref: ref}
	f.results[v.Digest()] = r
	return r, logs.String(), nil
}

func (f *fixture) mustSolve(t *testing.T, st llb.State) cache.Ref {
	t.Helper()
	r, _, err := f.solve(t.Context(), st.Vertex())
	if err != nil {
		t.Fatal(err)
	}
	return r.Ref
}

// run is a shell script on the base with mounts; from[i] feeds mount i.
func (f *fixture) run(t *testing.T, script string, mounts []llb.Mount, from ...llb.State) llb.State {
	t.Helper()
	if from == nil {
		from = make([]llb.State, len(mounts))
	}
	st, err := f.base.RunMounts(llb.ExecOp{
		Args:    []string{"/bin/sh", "-c", script},
		Env:     []string{"PATH=/bin"},
		Cwd:     "/",
		Network: llb.NetworkNone,
		Mounts:  mounts,
	}, from, llb.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// topLayer returns the entries of ref's last layer blob: name → content (files),
// "<dir>" for directories, "<type c>" for others.
func (f *fixture) topLayer(t *testing.T, ref cache.Ref) (map[string]string, []byte) {
	t.Helper()
	if len(ref.Layers) == 0 {
		t.Fatal("result has no layers")
	}
	l := ref.Layers[len(ref.Layers)-1]
	blob, err := f.d.Content.ReadAll(t.Context(), l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		switch h.Typeflag {
		case tar.TypeReg:
			b, _ := io.ReadAll(tr)
			out[name] = string(b)
		case tar.TypeDir:
			out[name] = "<dir>"
		default:
			out[name] = fmt.Sprintf("<type %c>", h.Typeflag)
		}
	}
	return out, raw
}

// writeBusybox fills root with busybox, a symlink per applet and testdata's passwd and
// group. There is no /run, so mount stubs below it are easy to spot.
func writeBusybox(root string) error {
	for _, d := range []string{"bin", "etc", "tmp"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o777|fs.ModeSticky); err != nil {
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
	for _, name := range []string{"passwd", "group"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, "etc", name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeTree writes files (path → content; a trailing "/" makes a directory) under root.
func writeTree(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(root, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func ptr[T any](v T) *T { return &v }
