package fscopy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/builderdev/builder/internal/testutil"
)

func TestMkfile(t *testing.T) {
	testutil.RequiresRoot(t) // owners
	tests := []struct {
		name    string
		dst     []node
		opt     MkfileOptions
		want    map[string]string // the destination tree, /etc left out
		wantErr string
	}{{
		name: "new file with parents owned by name",
		opt:  MkfileOptions{Path: "/app/conf/a.txt", Data: []byte("hello\n"), Mode: 0o640, Chown: &Owner{User: "app"}},
		want: map[string]string{
			"app": "d 0755 1234:1235", "app/conf": "d 0755 1234:1235", "app/conf/a.txt": "f 0640 1234:1235 hello\n",
		},
	}, {
		name: "numeric owner and relative path",
		opt:  MkfileOptions{Path: "run.sh", Data: []byte("#!/bin/sh\n"), Mode: 0o755, Chown: &Owner{User: "7", Group: "staff"}},
		want: map[string]string{"run.sh": "f 0755 7:2000 #!/bin/sh\n"},
	}, {
		name: "replaces an existing file, existing parents untouched",
		dst:  []node{dir("app", 0o700), file("app/a", 0o600, "old")},
		opt:  MkfileOptions{Path: "/app/a", Data: []byte("new"), Mode: 0o644},
		want: map[string]string{"app": "d 0700 0:0", "app/a": "f 0644 0:0 new"},
	}, {
		name: "follows a symlink inside the root",
		dst:  []node{link("cfg", "/etc/real.conf")},
		opt:  MkfileOptions{Path: "/cfg", Data: []byte("x"), Mode: 0o644},
		want: map[string]string{"cfg": "l 0:0 -> /etc/real.conf", "etc/real.conf": "f 0644 0:0 x"},
	}, {
		name: "symlink to an absolute host path stays in the root",
		dst:  []node{link("out", "/tmp/fscopy-mkfile-host/x")},
		opt:  MkfileOptions{Path: "/out", Data: []byte("x"), Mode: 0o644},
		want: map[string]string{
			"out": "l 0:0 -> /tmp/fscopy-mkfile-host/x", "tmp": "d 0755 0:0",
			"tmp/fscopy-mkfile-host": "d 0755 0:0", "tmp/fscopy-mkfile-host/x": "f 0644 0:0 x",
		},
	}, {
		name: "a fifo is replaced, not opened",
		dst:  []node{{path: "p", kind: 'p', mode: 0o644}},
		opt:  MkfileOptions{Path: "/p", Data: []byte("data"), Mode: 0o600},
		want: map[string]string{"p": "f 0600 0:0 data"},
	}, {
		name:    "existing directory",
		dst:     []node{dir("d", 0o755)},
		opt:     MkfileOptions{Path: "/d", Data: []byte("x"), Mode: 0o644},
		wantErr: "is a directory",
	}, {
		name:    "the root",
		opt:     MkfileOptions{Path: "/", Data: []byte("x"), Mode: 0o644},
		wantErr: "is a directory",
	}, {
		name:    "parent is a file",
		dst:     []node{file("f", 0o644, "")},
		opt:     MkfileOptions{Path: "/f/x", Data: []byte("x"), Mode: 0o644},
		wantErr: "not a directory",
	}, {
		name: "unknown user is root, as in BuildKit",
		opt:  MkfileOptions{Path: "/x", Data: []byte("x"), Mode: 0o644, Chown: &Owner{User: "nobody", Group: "app"}},
		want: map[string]string{"x": "f 0644 0:1235 x"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			build(t, root, userDB...)
			build(t, root, tc.dst...)
			err := Mkfile(t.Context(), root, tc.opt)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Mkfile() = %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Mkfile() = %v", err)
			}
			got := describe(t, root)
			for _, p := range []string{"etc", "etc/passwd", "etc/group"} {
				delete(got, p)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("tree (-want +got):\n%s", diff)
			}
			hostAbsent(t, "/tmp/fscopy-mkfile-host")
			if m, _ := filepath.Glob(filepath.Join(root, "*", ".mkfile-*")); len(m) > 0 {
				t.Errorf("temporary files left: %v", m)
			}
		})
	}
}

func TestMkfileSetuid(t *testing.T) {
	testutil.RequiresRoot(t)
	root := t.TempDir()
	build(t, root, userDB...)
	err := Mkfile(t.Context(), root, MkfileOptions{Path: "/bin/tool", Data: []byte("x"), Mode: 0o755 | os.ModeSetuid, Chown: &Owner{User: "app"}})
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(root, "bin/tool"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o4755 || st.Uid != 1234 {
		t.Errorf("mode %04o uid %d, want 4755 and 1234 (chown must not clear setuid)", st.Mode&0o7777, st.Uid)
	}
}
