package fscopy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/builderdev/builder/internal/testutil"
)

// A passwd/group pair for --chown by name.
var userDB = []node{
	file("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1235::/home/app:/bin/sh\n"),
	file("etc/group", 0o644, "root:x:0:\napp:x:1235:\nstaff:x:2000:\n"),
}

func TestCopy(t *testing.T) {
	dirTree := []node{dir("dir", 0o750), file("dir/x", 0o644, "X"), dir("dir/sub", 0o700), file("dir/sub/y", 0o600, "Y")}
	tests := []struct {
		name    string
		root    bool
		src     []node
		dst     []node
		opt     CopyOptions
		want    map[string]string // the whole destination tree
		wantErr string
	}{{
		name: "file to file",
		src:  []node{file("a.txt", 0o640, "A")},
		opt:  CopyOptions{Src: []string{"a.txt"}, Dest: "/b.txt"},
		want: map[string]string{"b.txt": "f 0640 0:0 A"},
	}, {
		name: "file replaces existing file",
		src:  []node{file("a.txt", 0o640, "A")},
		dst:  []node{file("b.txt", 0o600, "old")},
		opt:  CopyOptions{Src: []string{"a.txt"}, Dest: "/b.txt"},
		want: map[string]string{"b.txt": "f 0640 0:0 A"},
	}, {
		name: "file into existing dir",
		src:  []node{file("a.txt", 0o644, "A")},
		dst:  []node{dir("app", 0o711)},
		opt:  CopyOptions{Src: []string{"a.txt"}, Dest: "/app"},
		want: map[string]string{"app": "d 0711 0:0", "app/a.txt": "f 0644 0:0 A"},
	}, {
		name: "file to dir/ created",
		src:  []node{file("a.txt", 0o644, "A")},
		opt:  CopyOptions{Src: []string{"a.txt"}, Dest: "/new/"},
		want: map[string]string{"new": "d 0755 0:0", "new/a.txt": "f 0644 0:0 A"},
	}, {
		name: "dir contents into created dest",
		src:  dirTree,
		opt:  CopyOptions{Src: []string{"dir"}, Dest: "/out"},
		want: map[string]string{
			"out": "d 0750 0:0", "out/x": "f 0644 0:0 X",
			"out/sub": "d 0700 0:0", "out/sub/y": "f 0600 0:0 Y",
		},
	}, {
		name: "dir contents merged into existing dest keeping its metadata",
		src:  dirTree,
		dst:  []node{dir("out", 0o711), file("out/keep", 0o644, "K"), file("out/x", 0o600, "old"), dir("out/sub", 0o755)},
		opt:  CopyOptions{Src: []string{"dir"}, Dest: "/out/"},
		want: map[string]string{
			"out": "d 0711 0:0", "out/keep": "f 0644 0:0 K", "out/x": "f 0644 0:0 X",
			"out/sub": "d 0700 0:0", "out/sub/y": "f 0600 0:0 Y",
		},
	}, {
		name: "context root into workdir",
		src:  []node{file("a", 0o644, "A"), dir("d", 0o755), file("d/b", 0o644, "B")},
		opt:  CopyOptions{Src: []string{"."}, Dest: "/w/"},
		want: map[string]string{"w": "d 0755 0:0", "w/a": "f 0644 0:0 A", "w/d": "d 0755 0:0", "w/d/b": "f 0644 0:0 B"},
	}, {
		name: "wildcard into dir",
		src:  []node{file("a.txt", 0o644, "A"), file("b.txt", 0o644, "B"), file("c.md", 0o644, "C")},
		opt:  CopyOptions{Src: []string{"*.txt"}, Dest: "/d/", AllowWildcard: true},
		want: map[string]string{"d": "d 0755 0:0", "d/a.txt": "f 0644 0:0 A", "d/b.txt": "f 0644 0:0 B"},
	}, {
		name: "wildcard in a subdirectory and ? matches",
		src:  []node{dir("s", 0o755), file("s/a1", 0o644, "1"), file("s/a2", 0o644, "2"), file("s/a10", 0o644, "10")},
		opt:  CopyOptions{Src: []string{"s/a?"}, Dest: "/d/", AllowWildcard: true},
		want: map[string]string{"d": "d 0755 0:0", "d/a1": "f 0644 0:0 1", "d/a2": "f 0644 0:0 2"},
	}, {
		name: "wildcard matching dirs merges their contents",
		src:  []node{dir("p1", 0o755), file("p1/a", 0o644, "A"), dir("p2", 0o755), file("p2/b", 0o644, "B")},
		opt:  CopyOptions{Src: []string{"p*"}, Dest: "/d", AllowWildcard: true},
		want: map[string]string{"d": "d 0755 0:0", "d/a": "f 0644 0:0 A", "d/b": "f 0644 0:0 B"},
	}, {
		name: "wildcard with one match behaves as a single source",
		src:  []node{file("only.txt", 0o644, "O")},
		opt:  CopyOptions{Src: []string{"*.txt"}, Dest: "/renamed", AllowWildcard: true},
		want: map[string]string{"renamed": "f 0644 0:0 O"},
	}, {
		name: "wildcard off takes metacharacters literally",
		src:  []node{file("a*", 0o644, "star")},
		opt:  CopyOptions{Src: []string{"a*"}, Dest: "/x"},
		want: map[string]string{"x": "f 0644 0:0 star"},
	}, {
		name: "multiple sources into dir",
		src:  append([]node{file("a.txt", 0o644, "A")}, dirTree...),
		opt:  CopyOptions{Src: []string{"a.txt", "dir"}, Dest: "/m/"},
		want: map[string]string{
			"m": "d 0755 0:0", "m/a.txt": "f 0644 0:0 A", "m/x": "f 0644 0:0 X",
			"m/sub": "d 0700 0:0", "m/sub/y": "f 0600 0:0 Y",
		},
	}, {
		name: "multiple sources make dest a dir without trailing slash",
		src:  []node{file("a", 0o644, "A"), file("b", 0o644, "B")},
		opt:  CopyOptions{Src: []string{"a", "b"}, Dest: "/m"},
		want: map[string]string{"m": "d 0755 0:0", "m/a": "f 0644 0:0 A", "m/b": "f 0644 0:0 B"},
	}, {
		name: "nested parents created 0755",
		src:  []node{file("a.txt", 0o644, "A")},
		opt:  CopyOptions{Src: []string{"a.txt"}, Dest: "/p/q/r/a.txt"},
		want: map[string]string{"p": "d 0755 0:0", "p/q": "d 0755 0:0", "p/q/r": "d 0755 0:0", "p/q/r/a.txt": "f 0644 0:0 A"},
	}, {
		name: "symlink copied as symlink",
		src:  []node{file("a.txt", 0o644, "A"), link("ln", "a.txt")},
		opt:  CopyOptions{Src: []string{"ln"}, Dest: "/l"},
		want: map[string]string{"l": "l 0:0 -> a.txt"},
	}, {
		name: "FollowSymlinks copies a top-level link's target",
		src:  []node{file("a.txt", 0o640, "A"), link("ln", "a.txt")},
		opt:  CopyOptions{Src: []string{"ln"}, Dest: "/l", FollowSymlinks: true},
		want: map[string]string{"l": "f 0640 0:0 A"},
	}, {
		name: "FollowSymlinks keeps links inside a copied dir",
		src:  []node{dir("d", 0o755), file("d/a", 0o644, "A"), link("d/ln", "a"), link("top", "d")},
		opt:  CopyOptions{Src: []string{"top"}, Dest: "/o", FollowSymlinks: true},
		want: map[string]string{"o": "d 0755 0:0", "o/a": "f 0644 0:0 A", "o/ln": "l 0:0 -> a"},
	}, {
		name: "absolute source symlink resolves inside the source root",
		src:  []node{dir("etc", 0o755), file("etc/hostname", 0o644, "ctx"), link("ln", "/etc/hostname")},
		opt:  CopyOptions{Src: []string{"ln"}, Dest: "/h", FollowSymlinks: true},
		want: map[string]string{"h": "f 0644 0:0 ctx"},
	}, {
		name: "chmod applies to files and dirs",
		src:  dirTree,
		opt:  CopyOptions{Src: []string{"dir"}, Dest: "/c", Mode: ptr(os.FileMode(0o755))},
		want: map[string]string{
			"c": "d 0755 0:0", "c/x": "f 0755 0:0 X", "c/sub": "d 0755 0:0", "c/sub/y": "f 0755 0:0 Y",
		},
	}, {
		name: "chmod with raw setuid bit",
		src:  []node{file("a", 0o644, "A")},
		opt:  CopyOptions{Src: []string{"a"}, Dest: "/a", Mode: ptr(os.FileMode(0o4755))},
		want: map[string]string{"a": "f 4755 0:0 A"},
	}, {
		name: "chmod with os.ModeSetgid",
		src:  []node{file("a", 0o644, "A")},
		opt:  CopyOptions{Src: []string{"a"}, Dest: "/a", Mode: ptr(os.ModeSetgid | 0o750)},
		want: map[string]string{"a": "f 2750 0:0 A"},
	}, {
		name: "special bits preserved",
		src:  []node{dir("d", 0o755), file("d/suid", 0o4755, "S"), dir("d/tmp", 0o1777), dir("d/sg", 0o2775)},
		opt:  CopyOptions{Src: []string{"d"}, Dest: "/o/"},
		want: map[string]string{"o": "d 0755 0:0", "o/suid": "f 4755 0:0 S", "o/tmp": "d 1777 0:0", "o/sg": "d 2775 0:0"},
	}, {
		name:    "file cannot replace a directory",
		src:     []node{dir("d", 0o755), file("d/x", 0o644, "X")},
		dst:     []node{dir("o/x", 0o755)},
		opt:     CopyOptions{Src: []string{"d"}, Dest: "/o"},
		wantErr: "cannot replace directory /o/x",
	}, {
		name:    "directory cannot replace a file",
		src:     []node{dir("d", 0o755), dir("d/x", 0o755)},
		dst:     []node{file("o/x", 0o644, "X")},
		opt:     CopyOptions{Src: []string{"d"}, Dest: "/o"},
		wantErr: "cannot replace non-directory /o/x",
	}, {
		name:    "dir source onto a file dest",
		src:     dirTree,
		dst:     []node{file("o", 0o644, "X")},
		opt:     CopyOptions{Src: []string{"dir"}, Dest: "/o"},
		wantErr: "not a directory",
	}, {
		name: "symlink to dir in dest is merged into (usr-merge)",
		src:  []node{dir("root", 0o755), dir("root/lib", 0o755), file("root/lib/libx.so", 0o644, "L")},
		dst:  []node{dir("usr/lib", 0o755), file("usr/lib/libc.so", 0o644, "C"), link("lib", "usr/lib")},
		opt:  CopyOptions{Src: []string{"root"}, Dest: "/"},
		want: map[string]string{
			"usr": "d 0755 0:0", "usr/lib": "d 0755 0:0", "usr/lib/libc.so": "f 0644 0:0 C",
			"usr/lib/libx.so": "f 0644 0:0 L", "lib": "l 0:0 -> usr/lib",
		},
	}, {
		name: "file replaces a symlink rather than writing through it",
		src:  []node{file("a", 0o644, "new")},
		dst:  []node{file("target", 0o644, "T"), link("f", "/target")},
		opt:  CopyOptions{Src: []string{"a"}, Dest: "/f"},
		want: map[string]string{"target": "f 0644 0:0 T", "f": "f 0644 0:0 new"},
	}, {
		name: "dest through an absolute symlink stays in the dest root",
		src:  []node{file("a", 0o644, "A")},
		dst:  []node{dir("real", 0o755), link("conf", "/real")},
		opt:  CopyOptions{Src: []string{"a"}, Dest: "/conf/sub/a"},
		want: map[string]string{"real": "d 0755 0:0", "real/sub": "d 0755 0:0", "real/sub/a": "f 0644 0:0 A", "conf": "l 0:0 -> /real"},
	}, {
		name: "source ../ stays inside the source root",
		src:  []node{file("outside", 0o644, "inside")},
		opt:  CopyOptions{Src: []string{"../../outside"}, Dest: "/o"},
		want: map[string]string{"o": "f 0644 0:0 inside"},
	}, {
		name:    "missing source",
		opt:     CopyOptions{Src: []string{"missing.txt"}, Dest: "/o", SourceName: "build context"},
		wantErr: `"missing.txt": not found in build context`,
	}, {
		name:    "missing source below a file",
		src:     []node{file("f", 0o644, "F")},
		opt:     CopyOptions{Src: []string{"f/x"}, Dest: "/o"},
		wantErr: `"f/x": not found`,
	}, {
		name:    "wildcard without match",
		src:     []node{file("a.md", 0o644, "A")},
		opt:     CopyOptions{Src: []string{"*.txt"}, Dest: "/o/", AllowWildcard: true},
		wantErr: `"*.txt": not found`,
	}, {
		name:    "bad wildcard pattern",
		src:     []node{file("a", 0o644, "A")},
		opt:     CopyOptions{Src: []string{"[a"}, Dest: "/o/", AllowWildcard: true},
		wantErr: "syntax error in pattern",
	}, {
		name: "context copies are owned 0:0",
		root: true,
		src:  []node{owned(dir("d", 0o755), 1000, 1000), owned(file("d/f", 0o644, "F"), 1000, 1001), owned(link("d/l", "f"), 1000, 1000)},
		opt:  CopyOptions{Src: []string{"d"}, Dest: "/o"},
		want: map[string]string{"o": "d 0755 0:0", "o/f": "f 0644 0:0 F", "o/l": "l 0:0 -> f"},
	}, {
		name: "PreserveOwner keeps uid/gid",
		root: true,
		src:  []node{owned(dir("d", 0o755), 1000, 1000), owned(file("d/f", 0o644, "F"), 1000, 1001), owned(link("d/l", "f"), 1002, 1003)},
		opt:  CopyOptions{Src: []string{"d"}, Dest: "/o", PreserveOwner: true},
		want: map[string]string{"o": "d 0755 1000:1000", "o/f": "f 0644 1000:1001 F", "o/l": "l 1002:1003 -> f"},
	}, {
		name: "chown by name, parents too",
		root: true,
		src:  []node{file("f", 0o4755, "F")},
		dst:  userDB,
		opt:  CopyOptions{Src: []string{"f"}, Dest: "/home/app/bin/", Chown: &Owner{User: "app"}},
		want: map[string]string{
			"etc": "d 0755 0:0", "etc/passwd": "f 0644 0:0 " + userDB[0].data, "etc/group": "f 0644 0:0 " + userDB[1].data,
			"home": "d 0755 1234:1235", "home/app": "d 0755 1234:1235", "home/app/bin": "d 0755 1234:1235",
			"home/app/bin/f": "f 4755 1234:1235 F",
		},
	}, {
		name: "chown by user and group names",
		root: true,
		src:  []node{file("f", 0o644, "F")},
		dst:  userDB,
		opt:  CopyOptions{Src: []string{"f"}, Dest: "/f", Chown: &Owner{User: "app", Group: "staff"}},
		want: map[string]string{
			"etc": "d 0755 0:0", "etc/passwd": "f 0644 0:0 " + userDB[0].data, "etc/group": "f 0644 0:0 " + userDB[1].data,
			"f": "f 0644 1234:2000 F",
		},
	}, {
		name: "chown by uid:gid without passwd",
		root: true,
		src:  []node{dir("d", 0o755), file("d/f", 0o644, "F"), link("d/l", "f")},
		opt:  CopyOptions{Src: []string{"d"}, Dest: "/o", Chown: &Owner{User: "1000", Group: "1001"}},
		want: map[string]string{"o": "d 0755 1000:1001", "o/f": "f 0644 1000:1001 F", "o/l": "l 1000:1001 -> f"},
	}, {
		name: "chown by uid alone uses it as gid",
		root: true,
		src:  []node{file("f", 0o644, "F")},
		opt:  CopyOptions{Src: []string{"f"}, Dest: "/f", Chown: &Owner{User: "42"}},
		want: map[string]string{"f": "f 0644 42:42 F"},
	}, {
		// BuildKit's rule: names missing from the image's files are not errors.
		name: "chown unknown user is root",
		root: true,
		src:  []node{file("f", 0o644, "F")},
		dst:  userDB,
		opt:  CopyOptions{Src: []string{"f"}, Dest: "/f", Chown: &Owner{User: "nobody-here"}},
		want: map[string]string{"etc": "d 0755 0:0", "etc/passwd": "f 0644 0:0 " + userDB[0].data, "etc/group": "f 0644 0:0 " + userDB[1].data, "f": "f 0644 0:0 F"},
	}, {
		name: "chown unknown group keeps the user's primary group",
		root: true,
		src:  []node{file("f", 0o644, "F")},
		dst:  userDB,
		opt:  CopyOptions{Src: []string{"f"}, Dest: "/f", Chown: &Owner{User: "app", Group: "wheel"}},
		want: map[string]string{"etc": "d 0755 0:0", "etc/passwd": "f 0644 0:0 " + userDB[0].data, "etc/group": "f 0644 0:0 " + userDB[1].data, "f": "f 0644 1234:1235 F"},
	}, {
		name: "chown by name without passwd is root",
		root: true,
		src:  []node{file("f", 0o644, "F")},
		opt:  CopyOptions{Src: []string{"f"}, Dest: "/f", Chown: &Owner{User: "app", Group: "staff"}},
		want: map[string]string{"f": "f 0644 0:0 F"},
	}, {
		name: "fifo and device",
		root: true,
		src:  []node{{path: "p", kind: 'p', mode: 0o640}, {path: "null", kind: 'c', mode: 0o666}},
		opt:  CopyOptions{Src: []string{"p", "null"}, Dest: "/dev/"},
		want: map[string]string{"dev": "d 0755 0:0", "dev/p": "p 0640 0:0 0", "dev/null": "c 0666 0:0 259"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.root || tc.wantErr == "" {
				// Copies are owned 0:0 (or the --chown owner): that needs CAP_CHOWN.
				testutil.RequiresRoot(t)
			}
			base := t.TempDir()
			src := filepath.Join(base, "a", "b", "ctx")
			dst := filepath.Join(base, "dst")
			build(t, base, file("a/outside", 0o644, "outside!"), file("a/b/outside", 0o644, "outside!"))
			build(t, src, dir(".", 0o755))
			build(t, src, tc.src...)
			build(t, dst, dir(".", 0o755))
			build(t, dst, tc.dst...)
			err := Copy(t.Context(), src, dst, tc.opt)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Copy() error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Copy() = %v", err)
			}
			got := describe(t, dst)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("destination tree (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCopyNotFoundError(t *testing.T) {
	t.Parallel()
	src, dst := t.TempDir(), t.TempDir()
	err := Copy(t.Context(), src, dst, CopyOptions{Src: []string{"nope/missing.txt"}, Dest: "/x"})
	var nf *NotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("Copy() = %v, want a *NotFoundError", err)
	}
	if nf.Path != "nope/missing.txt" {
		t.Errorf("NotFoundError.Path = %q, want %q", nf.Path, "nope/missing.txt")
	}
}

// TestCopyNeverWritesHost points dest symlinks at the host's /etc and /tmp, and checks
// that nothing lands outside the destination root.
func TestCopyNeverWritesHost(t *testing.T) {
	t.Parallel()
	unique := "fscopy-" + filepath.Base(t.TempDir())
	tests := []struct {
		name string
		dst  []node
		dest string
		// where the file must land inside dst when the copy succeeds
		want string
	}{
		{name: "absolute etc link to itself", dst: []node{link("etc", "/etc")}, dest: "/etc/" + unique},
		{name: "relative link to itself", dst: []node{link("etc", "../../../../../../etc")}, dest: "/etc/" + unique},
		{name: "relative link climbing out", dst: []node{dir("real", 0o755), link("etc", "../../../../../../real")}, dest: "/etc/" + unique, want: "real/" + unique},
		{name: "absolute link to tmp", dst: []node{link("t", "/tmp")}, dest: "/t/" + unique, want: "tmp/" + unique},
		{name: "absolute link as dest dir", dst: []node{link("t", "/tmp")}, dest: "/t/", want: "tmp/a"},
		{name: "dotdot in dest", dest: "/../../../../tmp/" + unique, want: "tmp/" + unique},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testutil.RequiresRoot(t) // owner 0:0
			src, dst := t.TempDir(), t.TempDir()
			build(t, src, file("a", 0o644, "A"))
			build(t, dst, tc.dst...)
			err := Copy(t.Context(), src, dst, CopyOptions{Src: []string{"a"}, Dest: tc.dest})
			hostAbsent(t, "/etc/"+unique)
			hostAbsent(t, "/tmp/"+unique)
			if tc.want == "" {
				if err == nil {
					t.Logf("Copy() succeeded; tree %v", describe(t, dst))
				}
				return
			}
			if err != nil {
				t.Fatalf("Copy() = %v", err)
			}
			if b, err := os.ReadFile(filepath.Join(dst, tc.want)); err != nil || string(b) != "A" {
				t.Errorf("reading %s in dest = %q, %v; want %q", tc.want, b, err, "A")
			}
		})
	}
}

func TestCopyPreservesTimesAndHardlinks(t *testing.T) {
	t.Parallel()
	testutil.RequiresRoot(t) // owner 0:0
	src, dst := t.TempDir(), t.TempDir()
	build(t, src, dir("d", 0o755), file("d/f", 0o644, "F"), link("d/l", "f"), dir("d/sub", 0o755))
	if err := os.Link(filepath.Join(src, "d/f"), filepath.Join(src, "d/sub/hard")); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 7000, time.UTC)
	for _, p := range []string{"d/f", "d/l", "d/sub", "d"} {
		setMtime(t, filepath.Join(src, p), old.Add(time.Duration(len(p))*time.Second))
	}
	if err := Copy(t.Context(), src, dst, CopyOptions{Src: []string{"d"}, Dest: "/o"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"f", "l", "sub", "."} {
		want := mtime(t, filepath.Join(src, "d", p))
		if got := mtime(t, filepath.Join(dst, "o", p)); !got.Equal(want) {
			t.Errorf("mtime of %s = %v, want %v", p, got, want)
		}
	}
	a, err := os.Stat(filepath.Join(dst, "o/f"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.Stat(filepath.Join(dst, "o/sub/hard"))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(a, b) {
		t.Errorf("o/f and o/sub/hard are not the same inode")
	}
}

func TestCopyXattrs(t *testing.T) {
	t.Parallel()
	testutil.RequiresRoot(t) // owner 0:0
	src, dst := t.TempDir(), t.TempDir()
	build(t, src, file("f", 0o644, "F"))
	if err := syscall.Setxattr(filepath.Join(src, "f"), "user.test", []byte("v1"), 0); err != nil {
		t.Skipf("no user xattrs here: %v", err)
	}
	if err := Copy(t.Context(), src, dst, CopyOptions{Src: []string{"f"}, Dest: "/f"}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := syscall.Getxattr(filepath.Join(dst, "f"), "user.test", buf)
	if err != nil || string(buf[:n]) != "v1" {
		t.Errorf("user.test on copy = %q, %v; want %q", buf[:n], err, "v1")
	}
}

func TestCopyCancelled(t *testing.T) {
	t.Parallel()
	src, dst := t.TempDir(), t.TempDir()
	build(t, src, file("f", 0o644, "F"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Copy(ctx, src, dst, CopyOptions{Src: []string{"f"}, Dest: "/f"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Copy() with a cancelled context = %v, want context.Canceled", err)
	}
}
