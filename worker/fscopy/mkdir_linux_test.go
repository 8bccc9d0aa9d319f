package fscopy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/builderdev/builder/internal/testutil"
)

func TestMkdir(t *testing.T) {
	tests := []struct {
		name    string
		root    bool
		dst     []node
		opt     MkdirOptions
		want    map[string]string
		wantErr string
	}{{
		name: "single dir with exact mode",
		opt:  MkdirOptions{Path: "/d", Mode: 0o777},
		want: map[string]string{"d": "d 0777 0:0"},
	}, {
		name: "existing dir is not an error and keeps its mode",
		dst:  []node{dir("d", 0o700)},
		opt:  MkdirOptions{Path: "/d", Mode: 0o755},
		want: map[string]string{"d": "d 0700 0:0"},
	}, {
		name:    "missing parent without MakeParents",
		opt:     MkdirOptions{Path: "/a/b", Mode: 0o755},
		wantErr: "creating /a/b",
	}, {
		name:    "existing file",
		dst:     []node{file("f", 0o644, "F")},
		opt:     MkdirOptions{Path: "/f", Mode: 0o755},
		wantErr: "file exists",
	}, {
		name: "parents get the mode",
		dst:  []node{dir("a", 0o700)},
		opt:  MkdirOptions{Path: "/a/b/c", Mode: 0o750, MakeParents: true},
		want: map[string]string{"a": "d 0700 0:0", "a/b": "d 0750 0:0", "a/b/c": "d 0750 0:0"},
	}, {
		name:    "parent is a file",
		dst:     []node{file("a", 0o644, "F")},
		opt:     MkdirOptions{Path: "/a/b", Mode: 0o755, MakeParents: true},
		wantErr: "not a directory",
	}, {
		name: "parents through an absolute symlink stay inside",
		dst:  []node{dir("real", 0o755), link("l", "/real")},
		opt:  MkdirOptions{Path: "/l/x/y", Mode: 0o755, MakeParents: true},
		want: map[string]string{"real": "d 0755 0:0", "real/x": "d 0755 0:0", "real/x/y": "d 0755 0:0", "l": "l 0:0 -> /real"},
	}, {
		name: "parents and chown by name",
		root: true,
		dst:  userDB,
		opt:  MkdirOptions{Path: "/home/app/.cache", Mode: 0o700, MakeParents: true, Chown: &Owner{User: "app"}},
		want: map[string]string{
			"etc": "d 0755 0:0", "etc/passwd": "f 0644 0:0 " + userDB[0].data, "etc/group": "f 0644 0:0 " + userDB[1].data,
			"home": "d 0700 1234:1235", "home/app": "d 0700 1234:1235", "home/app/.cache": "d 0700 1234:1235",
		},
	}, {
		name: "chown by ids with sticky bit",
		root: true,
		opt:  MkdirOptions{Path: "/tmp", Mode: os.ModeSticky | 0o777, Chown: &Owner{User: "7", Group: "8"}},
		want: map[string]string{"tmp": "d 1777 7:8"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.root || tc.wantErr == "" {
				testutil.RequiresRoot(t) // created directories are owned 0:0
			}
			dst := t.TempDir()
			build(t, dst, tc.dst...)
			err := Mkdir(t.Context(), dst, tc.opt)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Mkdir() error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Mkdir() = %v", err)
			}
			if diff := cmp.Diff(tc.want, describe(t, dst)); diff != "" {
				t.Errorf("destination tree (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMkdirNeverWritesHost(t *testing.T) {
	t.Parallel()
	testutil.RequiresRoot(t) // owner 0:0
	unique := "fscopy-mkdir-" + filepath.Base(t.TempDir())
	dst := t.TempDir()
	build(t, dst, link("t", "/tmp"))
	if err := Mkdir(t.Context(), dst, MkdirOptions{Path: "/t/" + unique, Mode: 0o755, MakeParents: true}); err != nil {
		t.Fatal(err)
	}
	hostAbsent(t, "/tmp/"+unique)
	if fi, err := os.Stat(filepath.Join(dst, "tmp", unique)); err != nil || !fi.IsDir() {
		t.Errorf("stat tmp/%s in dest = %v, %v; want a directory", unique, fi, err)
	}
}
