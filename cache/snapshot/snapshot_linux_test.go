//go:build linux

package snapshot

import (
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

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/builderdev/builder/internal/testutil"
)

func newSnapshotter(t testing.TB) *Snapshotter {
	t.Helper()
	testutil.RequiresRoot(t)
	s, err := New(filepath.Join(t.TempDir(), "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { assertNoMounts(t, s.root) })
	return s
}

// assertNoMounts fails if anything is still mounted below dir.
func assertNoMounts(t testing.TB, dir string) {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		t.Errorf("left mounted: %s", m.Mountpoint)
		unix.Unmount(m.Mountpoint, unix.MNT_DETACH)
	}
}

// commitLayer prepares a snapshot on parents, lets write change it through the
// mounted overlay, and commits it as id.
func commitLayer(t testing.TB, s *Snapshotter, parents []string, id string, write func(root string) error) {
	t.Helper()
	ctx := t.Context()
	a, err := s.Prepare(ctx, parents)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Discard(ctx)
	if err := write(a.Root()); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(ctx, id); err != nil {
		t.Fatal(err)
	}
}

func writeFiles(files map[string]string) func(string) error {
	return func(root string) error {
		for name, content := range files {
			p := filepath.Join(root, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
}

// listTree returns "path" or "path=content" for every entry below root, sorted.
func listTree(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel += "=" + string(b)
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func TestWhiteoutAfterDelete(t *testing.T) {
	s := newSnapshotter(t)
	ctx := t.Context()
	commitLayer(t, s, nil, "base", writeFiles(map[string]string{"a": "1", "b": "2"}))

	a, err := s.Prepare(ctx, []string{"base"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Discard(ctx)
	if err := os.Remove(filepath.Join(a.Root(), "a")); err != nil {
		t.Fatal(err)
	}
	if err := a.Unmount(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Unmount(ctx); err != nil {
		t.Fatalf("second Unmount: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(a.UpperDir(), "a"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("upper/a: mode %o rdev %d, want a 0/0 char device", st.Mode, st.Rdev)
	}
	if got := listTree(t, a.UpperDir()); !slices.Equal(got, []string{"a"}) {
		t.Errorf("upper = %q, want only the whiteout", got)
	}
}

func TestOpaqueDir(t *testing.T) {
	s := newSnapshotter(t)
	ctx := t.Context()
	commitLayer(t, s, nil, "base", writeFiles(map[string]string{"d/x": "1", "d/y": "2"}))

	a, err := s.Prepare(ctx, []string{"base"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Discard(ctx)
	d := filepath.Join(a.Root(), "d")
	if err := os.RemoveAll(d); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := listTree(t, a.Root()); !slices.Equal(got, []string{"d"}) {
		t.Errorf("merged = %q, want an empty d", got)
	}
	if err := a.Unmount(ctx); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	n, err := unix.Lgetxattr(filepath.Join(a.UpperDir(), "d"), "trusted.overlay.opaque", buf)
	if err != nil {
		t.Fatalf("reading opaque xattr: %v", err)
	}
	if got := string(buf[:n]); got != "y" {
		t.Errorf("trusted.overlay.opaque = %q, want y", got)
	}
}

func TestChain(t *testing.T) {
	testutil.RequiresRoot(t)
	tests := []struct {
		name string
		root string // below t.TempDir()
	}{
		{name: "mount(2)", root: "snapshots"},
		// ':' cannot go in a lowerdir= string, so this takes the fsconfig path.
		{name: "new mount API", root: "snap:shots"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			s, err := New(filepath.Join(t.TempDir(), tc.root))
			if err != nil {
				t.Fatal(err)
			}
			defer assertNoMounts(t, s.root)
			commitLayer(t, s, nil, "l1", writeFiles(map[string]string{"one": "1", "gone": "x", "shared": "from l1"}))
			commitLayer(t, s, []string{"l1"}, "l2", func(root string) error {
				if err := os.Remove(filepath.Join(root, "gone")); err != nil {
					return err
				}
				return writeFiles(map[string]string{"two": "2", "shared": "from l2"})(root)
			})
			commitLayer(t, s, []string{"l1", "l2"}, "l3", writeFiles(map[string]string{"three": "3"}))
			for _, id := range []string{"l1", "l2", "l3"} {
				if !s.Exists(id) {
					t.Errorf("Exists(%s) = false", id)
				}
			}
			want := []string{"one=1", "shared=from l2", "three=3", "two=2"}

			a, err := s.Prepare(ctx, []string{"l1", "l2", "l3"})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Discard(ctx)
			if got := listTree(t, a.Root()); !slices.Equal(got, want) {
				t.Errorf("merged = %q, want %q", got, want)
			}

			root, release, err := s.View(ctx, []string{"l1", "l2", "l3"})
			if err != nil {
				t.Fatal(err)
			}
			if got := listTree(t, root); !slices.Equal(got, want) {
				t.Errorf("view = %q, want %q", got, want)
			}
			if err := release(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(root); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("view dir still there after release: %v", err)
			}
		})
	}
}

func TestView(t *testing.T) {
	s := newSnapshotter(t)
	ctx := t.Context()
	// A layer holding only a whiteout must look empty when viewed alone.
	in, err := s.Ingest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if in.Root() != in.UpperDir() {
		t.Errorf("Ingest: Root %s != UpperDir %s", in.Root(), in.UpperDir())
	}
	if err := unix.Mknod(filepath.Join(in.UpperDir(), "deleted"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in.UpperDir(), "kept"), []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := in.Commit(ctx, "wh"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		parents []string
		want    []string
	}{
		{name: "scratch", parents: nil, want: nil},
		{name: "one parent hides whiteouts", parents: []string{"wh"}, want: []string{"kept=k"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, release, err := s.View(ctx, tc.parents)
			if err != nil {
				t.Fatal(err)
			}
			defer release()
			if got := listTree(t, root); !slices.Equal(got, tc.want) {
				t.Errorf("view = %q, want %q", got, tc.want)
			}
			if len(tc.parents) > 0 {
				err := os.WriteFile(filepath.Join(root, "new"), nil, 0o644)
				if !errors.Is(err, unix.EROFS) {
					t.Errorf("writing into a view: %v, want EROFS", err)
				}
			}
			if err := release(); err != nil {
				t.Fatal(err)
			}
			if err := release(); err != nil {
				t.Errorf("second release: %v", err)
			}
		})
	}

	if _, _, err := s.View(ctx, []string{"missing"}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("View of a missing parent: %v, want fs.ErrNotExist", err)
	}
}

func TestCommitExisting(t *testing.T) {
	s := newSnapshotter(t)
	ctx := t.Context()
	first, err := s.Prepare(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Prepare(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(map[string]string{"f": "first"})(first.Root())
	writeFiles(map[string]string{"f": "second"})(second.Root())
	if err := first.Commit(ctx, "same"); err != nil {
		t.Fatal(err)
	}
	if err := second.Commit(ctx, "same"); err != nil {
		t.Fatalf("committing an existing id: %v", err)
	}
	if got := listTree(t, s.Dir("same")); !slices.Equal(got, []string{"f=first"}) {
		t.Errorf("committed = %q, want the first commit's content", got)
	}
	for _, a := range []*Active{first, second} {
		if err := a.Discard(ctx); err != nil {
			t.Errorf("Discard after Commit: %v", err)
		}
		if _, err := os.Stat(a.dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("active dir %s left after Commit: %v", a.dir, err)
		}
	}
	if err := first.Commit(ctx, "again"); err == nil {
		t.Error("second Commit of one Active succeeded")
	}
}

func TestDiscard(t *testing.T) {
	s := newSnapshotter(t)
	ctx := t.Context()
	a, err := s.Prepare(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(map[string]string{"f": "x"})(a.Root())
	if err := a.Discard(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Discard(ctx); err != nil {
		t.Errorf("second Discard: %v", err)
	}
	entries, err := os.ReadDir(filepath.Join(s.root, activeDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("active dir not empty after Discard: %v", entries)
	}
}

func TestInitLayer(t *testing.T) {
	s := newSnapshotter(t)
	ctx := t.Context()
	commitLayer(t, s, nil, "base", writeFiles(map[string]string{"etc/hosts": "image hosts", "bin/sh": "#!"}))

	a, err := s.Prepare(ctx, []string{"base"}, WithInitLayer())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Discard(ctx)
	for _, p := range []string{"dev", "dev/pts", "dev/shm", "proc", "sys", "etc/resolv.conf", "etc/hosts", "etc/hostname", "bin/sh"} {
		if _, err := os.Lstat(filepath.Join(a.Root(), p)); err != nil {
			t.Errorf("merged view lacks %s: %v", p, err)
		}
	}
	// The init layer is above the image: its empty mount point file wins.
	if b, err := os.ReadFile(filepath.Join(a.Root(), "etc/hosts")); err != nil || len(b) != 0 {
		t.Errorf("etc/hosts = %q, %v; want the init layer's empty file", b, err)
	}
	if err := a.Unmount(ctx); err != nil {
		t.Fatal(err)
	}
	if got := listTree(t, a.UpperDir()); len(got) != 0 {
		t.Errorf("upper dir = %q, want empty", got)
	}
	// A second Prepare reuses the init layer.
	b, err := s.Prepare(ctx, nil, WithInitLayer())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Discard(ctx)
	if fi, err := os.Stat(filepath.Join(b.Root(), "dev/shm")); err != nil || fi.Mode()&fs.ModeSticky == 0 {
		t.Errorf("dev/shm: %v, %v; want a sticky dir", fi, err)
	}
}

func TestLongChain(t *testing.T) {
	s := newSnapshotter(t)
	ctx := t.Context()
	const n = 150
	var parents, want []string
	for i := range n {
		id := fmt.Sprintf("%064x", i)
		in, err := s.Ingest(ctx)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("f%03d", i)
		if err := os.WriteFile(filepath.Join(in.UpperDir(), name), []byte(id[60:]), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := in.Commit(ctx, id); err != nil {
			t.Fatal(err)
		}
		parents = append(parents, id)
		want = append(want, name+"="+id[60:])
	}
	lower, err := s.lowerDirs(parents)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := (overlay{lower: lower}).data(); ok {
		t.Fatal("chain fits one page; the new mount API would not be exercised")
	}
	a, err := s.Prepare(ctx, parents, WithInitLayer())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Discard(ctx)
	got := listTree(t, a.Root())
	got = slices.DeleteFunc(got, func(p string) bool { return !strings.HasPrefix(p, "f") })
	if !slices.Equal(got, want) {
		t.Errorf("merged view of %d layers has %d files, want %d", n, len(got), len(want))
	}
	root, release, err := s.View(ctx, parents)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if got := listTree(t, root); !slices.Equal(got, want) {
		t.Errorf("view of %d layers has %d files, want %d", n, len(got), len(want))
	}
}

func TestCleanStale(t *testing.T) {
	s := newSnapshotter(t)
	ctx := t.Context()
	// A pid that certainly existed and is now gone.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	deadPid := cmd.Process.Pid

	// Build a stale active snapshot with a live overlay mount, as a SIGKILLed
	// process would leave it.
	live, err := s.Prepare(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Discard(ctx)
	stale := filepath.Join(s.root, activeDir, fmt.Sprintf("%d-123456", deadPid))
	for _, d := range []string{"upper", "work", "merged"} {
		if err := os.MkdirAll(filepath.Join(stale, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ov := overlay{lower: []string{filepath.Join(s.root, emptyDir)}, upper: filepath.Join(stale, "upper"), work: filepath.Join(stale, "work"), target: filepath.Join(stale, "merged")}
	if err := ov.mount(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "merged", "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	if err := s.CleanStale(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale dir still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(live.Root(), ".")); err != nil {
		t.Errorf("live snapshot removed: %v", err)
	}
	if m, err := mountinfo.Mounted(live.Root()); err != nil || !m {
		t.Errorf("live snapshot unmounted: %v %v", m, err)
	}
}

func TestPrepareConcurrent(t *testing.T) {
	s := newSnapshotter(t)
	ctx := t.Context()
	commitLayer(t, s, nil, "base", writeFiles(map[string]string{"a": "1"}))
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			a, err := s.Prepare(ctx, []string{"base"}, WithInitLayer())
			if err != nil {
				errs[i] = err
				return
			}
			defer a.Discard(ctx)
			writeFiles(map[string]string{"b": "2"})(a.Root())
			errs[i] = a.Commit(ctx, "child")
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got := listTree(t, s.Dir("child")); !slices.Equal(got, []string{"b=2"}) {
		t.Errorf("child = %q", got)
	}
}

func BenchmarkPrepareCommit(b *testing.B) {
	s := newSnapshotter(b)
	ctx := b.Context()
	commitLayer(b, s, nil, "base", writeFiles(map[string]string{"a": "1"}))
	for b.Loop() {
		a, err := s.Prepare(ctx, []string{"base"}, WithInitLayer())
		if err != nil {
			b.Fatal(err)
		}
		if err := a.Discard(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRemove(t *testing.T) {
	s := newSnapshotter(t)
	ctx := t.Context()
	commitLayer(t, s, nil, "gone", writeFiles(map[string]string{"a": "1"}))
	commitLayer(t, s, nil, "kept", writeFiles(map[string]string{"b": "2"}))
	if err := s.Remove(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if s.Exists("gone") || !s.Exists("kept") {
		t.Fatalf("after Remove: gone exists %v, kept exists %v", s.Exists("gone"), s.Exists("kept"))
	}
	if err := s.Remove(ctx, "gone"); err != nil {
		t.Fatalf("removing a missing snapshot: %v", err)
	}
	if err := s.Remove(ctx, "../kept"); err == nil {
		t.Fatal("Remove accepted an id with a path in it")
	}
	ents, err := os.ReadDir(filepath.Join(s.root, activeDir))
	if err != nil || len(ents) != 0 {
		t.Fatalf("active dir after Remove: %v, %v", ents, err)
	}
}
