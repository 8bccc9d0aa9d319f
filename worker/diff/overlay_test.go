package diff

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/builderdev/builder/internal/testutil"
)

// mountOverlay mounts lower (colon-separated, top first) with upper/work at merged the
// way the worker does, and unmounts it at cleanup unless the test did so already.
func mountOverlay(t *testing.T, lower, upper, work, merged string) (unmount func()) {
	t.Helper()
	opts := "lowerdir=" + lower + ",index=off,metacopy=off,redirect_dir=off"
	if upper != "" {
		opts += ",upperdir=" + upper + ",workdir=" + work
	}
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mounting overlay (%s): %v", opts, err)
	}
	mounted := true
	unmount = func() {
		if mounted {
			if err := unix.Unmount(merged, 0); err != nil {
				t.Errorf("unmounting %s: %v", merged, err)
			}
			mounted = false
		}
	}
	t.Cleanup(unmount)
	return unmount
}

func mkdirs(t *testing.T, base string, names ...string) []string {
	t.Helper()
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = filepath.Join(base, n)
		if err := os.MkdirAll(out[i], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestWriteLayerOverlay diffs a real overlay upper dir after deletions and an rm -rf +
// recreate, then stacks the extracted layer on the lower and checks the merged view.
func TestWriteLayerOverlay(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := t.Context()
	dirs := mkdirs(t, t.TempDir(), "lower", "upper", "work", "merged")
	lower, upper, work, merged := dirs[0], dirs[1], dirs[2], dirs[3]
	buildTree(t, lower, []node{
		{path: "file", kind: "file", mode: 0o644, data: "delete me"},
		{path: "keep", kind: "file", mode: 0o644, data: "keep"},
		{path: "dir", kind: "dir", mode: 0o755},
		{path: "dir/old", kind: "file", mode: 0o644, data: "old"},
		{path: "dir/sub", kind: "dir", mode: 0o755},
		{path: "dir/sub/deep", kind: "file", mode: 0o644, data: "deep"},
		{path: "other", kind: "dir", mode: 0o755},
		{path: "other/a", kind: "file", mode: 0o644, data: "a"},
		{path: "other/b", kind: "file", mode: 0o644, data: "b"},
	}, time.Unix(1600000000, 0))

	unmount := mountOverlay(t, lower, upper, work, merged)
	for _, step := range []func() error{
		func() error { return os.Remove(filepath.Join(merged, "file")) },
		func() error { return os.Remove(filepath.Join(merged, "other/a")) },
		func() error { return os.Remove(filepath.Join(merged, "other/b")) },
		func() error { return os.RemoveAll(filepath.Join(merged, "dir")) },
		func() error { return os.Mkdir(filepath.Join(merged, "dir"), 0o750) },
		func() error { return os.WriteFile(filepath.Join(merged, "dir/new"), []byte("new"), 0o644) },
		func() error { return os.WriteFile(filepath.Join(merged, "added"), []byte("added"), 0o600) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	unmount()

	cs := testutil.ContentStore(t)
	layer, empty, err := WriteLayer(ctx, cs, upper)
	if err != nil {
		t.Fatal(err)
	}
	if empty {
		t.Fatal("empty = true after changes")
	}
	var names []string
	for _, e := range readBlob(t, cs, layer) {
		names = append(names, e.Name)
		for k := range e.Xattrs {
			if strings.HasPrefix(k, "trusted.overlay.") {
				t.Errorf("%s carries overlay xattr %s", e.Name, k)
			}
		}
	}
	// Entries sort by the name in the upper dir, so a whiteout sits where its file was.
	want := []string{"added", "dir/", "dir/.wh..wh..opq", "dir/new", ".wh.file", "other/", "other/.wh.a", "other/.wh.b"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("layer entries (-want +got):\n%s", diff)
	}

	// Stack the extracted layer on the lower read-only: the merged view must be the one
	// the build step saw.
	snap := filepath.Join(t.TempDir(), "snap")
	f, err := cs.Open(ctx, layer.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Apply(ctx, f, snap); err != nil {
		t.Fatal(err)
	}
	view := mkdirs(t, t.TempDir(), "view")[0]
	unmountView := mountOverlay(t, snap+":"+lower, "", "", view)
	got := map[string]string{}
	err = filepath.WalkDir(view, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == view {
			return err
		}
		rel, _ := filepath.Rel(view, p)
		if d.IsDir() {
			got[rel] = "dir"
			return nil
		}
		dt, err := os.ReadFile(p)
		got[rel] = string(dt)
		return err
	})
	unmountView()
	if err != nil {
		t.Fatal(err)
	}
	wantView := map[string]string{"added": "added", "dir": "dir", "dir/new": "new", "keep": "keep", "other": "dir"}
	if diff := cmp.Diff(wantView, got); diff != "" {
		t.Errorf("merged view of lower + extracted layer (-want +got):\n%s", diff)
	}
}
