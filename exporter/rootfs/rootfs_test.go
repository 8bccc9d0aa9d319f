//go:build linux

package rootfs_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/builderdev/builder/exporter/rootfs"
	"github.com/builderdev/builder/internal/testutil"
)

var mtime = time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)

// sourceTree makes a tree with every kind of entry the exporters handle.
func sourceTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "etc/conf.d"), 0o755))
	must(os.WriteFile(filepath.Join(src, "etc/conf.d/a.conf"), []byte("a=1\n"), 0o640))
	must(os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\n"), 0o755))
	must(syscall.Chmod(filepath.Join(src, "run.sh"), 0o4755))
	must(os.Link(filepath.Join(src, "run.sh"), filepath.Join(src, "run-link.sh")))
	must(os.Symlink("etc/conf.d/a.conf", filepath.Join(src, "a-link")))
	must(os.Symlink("/etc/passwd", filepath.Join(src, "abs-link")))
	must(os.Mkdir(filepath.Join(src, "private"), 0o700))
	must(syscall.Mkfifo(filepath.Join(src, "fifo"), 0o600))
	if os.Geteuid() == 0 {
		must(os.Lchown(filepath.Join(src, "etc/conf.d/a.conf"), 1000, 1001))
		must(os.Lchown(filepath.Join(src, "run.sh"), 0, 0))
		must(syscall.Chmod(filepath.Join(src, "run.sh"), 0o4755)) // chown clears set-id bits
	}
	for _, p := range []string{"etc/conf.d/a.conf", "run.sh", "fifo", "etc/conf.d", "etc", "private"} {
		must(os.Chtimes(filepath.Join(src, p), mtime, mtime))
	}
	return src
}

// fileInfo is what the tests compare of one entry.
type fileInfo struct {
	Mode     os.FileMode
	UID, GID int
	Content  string
	Link     string
	MTime    time.Time
}

// listDir describes every entry below dir.
func listDir(t *testing.T, dir string) map[string]fileInfo {
	t.Helper()
	out := map[string]fileInfo{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		st := fi.Sys().(*syscall.Stat_t)
		info := fileInfo{Mode: fi.Mode(), UID: int(st.Uid), GID: int(st.Gid), MTime: fi.ModTime().UTC()}
		switch {
		case fi.Mode().IsRegular():
			dt, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			info.Content = string(dt)
		case fi.Mode()&os.ModeSymlink != 0:
			info.Link, _ = os.Readlink(p)
			info.MTime = time.Time{}
		}
		out[rel] = info
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWriteDir(t *testing.T) {
	src := sourceTree(t)
	want := listDir(t, src)
	dest := filepath.Join(t.TempDir(), "out")
	if err := rootfs.WriteDir(t.Context(), src, dest, rootfs.Options{}); err != nil {
		t.Fatal(err)
	}
	got := listDir(t, dest)
	if os.Geteuid() != 0 {
		// Without root the files belong to the caller.
		for k, v := range want {
			v.UID, v.GID = got[k].UID, got[k].GID
			want[k] = v
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("exported tree (-want +got):\n%s", d)
	}
	a, _ := os.Stat(filepath.Join(dest, "run.sh"))
	b, _ := os.Stat(filepath.Join(dest, "run-link.sh"))
	if !os.SameFile(a, b) {
		t.Error("run.sh and run-link.sh are no longer one file")
	}
	// No temporary directory left beside dest.
	ents, _ := os.ReadDir(filepath.Dir(dest))
	if len(ents) != 1 {
		t.Errorf("%d entries beside the export, want 1", len(ents))
	}
}

func TestWriteDirEpoch(t *testing.T) {
	src := sourceTree(t)
	epoch := time.Unix(1700000000, 0).UTC()
	dest := filepath.Join(t.TempDir(), "out")
	if err := rootfs.WriteDir(t.Context(), src, dest, rootfs.Options{Epoch: &epoch}); err != nil {
		t.Fatal(err)
	}
	for p, fi := range listDir(t, dest) {
		if fi.Link == "" && !fi.MTime.Equal(epoch) {
			t.Errorf("%s: mtime %s, want the epoch %s", p, fi.MTime, epoch)
		}
	}
}

// TestWriteDirExisting: an existing directory is written into; a symlink in it
// pointing outside does not take writes outside.
func TestWriteDirExisting(t *testing.T) {
	src := sourceTree(t)
	dest := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(dest, "keep.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	// dest/etc → outside: etc/conf.d/a.conf must land inside dest.
	if err := os.Symlink(outside, filepath.Join(dest, "etc")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dest, "run.sh"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rootfs.WriteDir(t.Context(), src, dest, rootfs.Options{}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("export wrote %d entries outside dest through a symlink", len(ents))
	}
	if dt, err := os.ReadFile(filepath.Join(dest, "etc/conf.d/a.conf")); err != nil || string(dt) != "a=1\n" {
		t.Errorf("etc/conf.d/a.conf = %q, %v", dt, err)
	}
	if fi, err := os.Lstat(filepath.Join(dest, "etc")); err != nil || !fi.IsDir() {
		t.Errorf("dest/etc is not a directory after the export: %v", err)
	}
	if dt, _ := os.ReadFile(filepath.Join(dest, "run.sh")); string(dt) != "#!/bin/sh\n" {
		t.Errorf("run.sh not replaced: %q", dt)
	}
	if dt, _ := os.ReadFile(filepath.Join(dest, "keep.txt")); string(dt) != "mine" {
		t.Errorf("keep.txt changed: %q", dt)
	}
}

func TestWriteDirRefusesFile(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(dest, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rootfs.WriteDir(t.Context(), sourceTree(t), dest, rootfs.Options{}); err == nil {
		t.Fatal("WriteDir over a file: no error")
	}
}

// TestWriteDirFailureLeavesNothing: a new destination that cannot be completed (here
// the context is cancelled) is not left half-written.
func TestWriteDirFailureLeavesNothing(t *testing.T) {
	src := sourceTree(t)
	if err := os.Remove(filepath.Join(src, "run-link.sh")); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	ctx, cancel := contextCancelled(t)
	cancel()
	if err := rootfs.WriteDir(ctx, src, filepath.Join(parent, "out"), rootfs.Options{}); err == nil {
		t.Fatal("WriteDir with a cancelled context: no error")
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Errorf("failed export left %d entries", len(ents))
	}
}

func TestWriteTar(t *testing.T) {
	src := sourceTree(t)
	epoch := time.Unix(1700000000, 0).UTC()
	for _, tc := range []struct {
		name  string
		epoch *time.Time
		want  time.Time
	}{{"own times", nil, mtime}, {"epoch", &epoch, epoch}} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := rootfs.WriteTar(t.Context(), src, &buf, rootfs.Options{Epoch: tc.epoch}); err != nil {
				t.Fatal(err)
			}
			tr := tar.NewReader(&buf)
			var names []string
			byName := map[string]*tar.Header{}
			for {
				hdr, err := tr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				names = append(names, hdr.Name)
				byName[hdr.Name] = hdr
			}
			wantNames := []string{"a-link", "abs-link", "etc/", "etc/conf.d/", "etc/conf.d/a.conf", "fifo", "private/", "run-link.sh", "run.sh"}
			if d := cmp.Diff(wantNames, names); d != "" {
				t.Fatalf("tar entries (-want +got):\n%s", d)
			}
			// run-link.sh sorts first, so it holds the content and run.sh links to it.
			if h := byName["run.sh"]; h.Typeflag != tar.TypeLink || h.Linkname != "run-link.sh" {
				t.Errorf("run.sh: type %c link %q, want a hard link to run-link.sh", h.Typeflag, h.Linkname)
			}
			if h := byName["run-link.sh"]; h.Mode != 0o4755 || h.Size != int64(len("#!/bin/sh\n")) {
				t.Errorf("run-link.sh: mode %o size %d", h.Mode, h.Size)
			}
			if h := byName["a-link"]; h.Typeflag != tar.TypeSymlink || h.Linkname != "etc/conf.d/a.conf" {
				t.Errorf("a-link: %+v", h)
			}
			if h := byName["private/"]; h.Mode != 0o700 || h.Typeflag != tar.TypeDir {
				t.Errorf("private/: mode %o type %c", h.Mode, h.Typeflag)
			}
			if h := byName["fifo"]; h.Typeflag != tar.TypeFifo {
				t.Errorf("fifo: type %c", h.Typeflag)
			}
			h := byName["etc/conf.d/a.conf"]
			if os.Geteuid() == 0 && (h.Uid != 1000 || h.Gid != 1001) {
				t.Errorf("a.conf owner %d:%d, want 1000:1001", h.Uid, h.Gid)
			}
			if !h.ModTime.Equal(tc.want) {
				t.Errorf("a.conf mtime %s, want %s", h.ModTime, tc.want)
			}
		})
	}
}

// TestWriteTarDevice: device nodes (root only) keep their numbers.
func TestWriteTarDevice(t *testing.T) {
	testutil.RequiresRoot(t)
	src := t.TempDir()
	if err := syscall.Mknod(filepath.Join(src, "null"), syscall.S_IFCHR|0o666, int(1<<8|3)); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := rootfs.WriteTar(t.Context(), src, &buf, rootfs.Options{}); err != nil {
		t.Fatal(err)
	}
	hdr, err := tar.NewReader(&buf).Next()
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Typeflag != tar.TypeChar || hdr.Devmajor != 1 || hdr.Devminor != 3 {
		t.Errorf("null: %+v", hdr)
	}
	dest := filepath.Join(t.TempDir(), "out")
	if err := rootfs.WriteDir(t.Context(), src, dest, rootfs.Options{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(dest, "null"))
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("exported null: %v, %v", fi, err)
	}
}

func TestWriteTarClosedPipe(t *testing.T) {
	pr, pw := io.Pipe()
	pr.CloseWithError(errors.New("reader gone"))
	err := rootfs.WriteTar(t.Context(), sourceTree(t), pw, rootfs.Options{})
	if err == nil || !strings.Contains(err.Error(), "reader gone") {
		t.Fatalf("WriteTar to a closed pipe: error = %v", err)
	}
}

func contextCancelled(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithCancel(t.Context())
}
