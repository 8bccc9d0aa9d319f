package ops

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
)

// layerMeta lists the top layer's entries as "mode uid:gid" (files get their content
// appended).
func (f *fixture) layerMeta(t *testing.T, st llb.State) map[string]string {
	t.Helper()
	ref := f.mustSolve(t, st)
	l := ref.Layers[len(ref.Layers)-1]
	blob, err := f.d.Content.ReadAll(t.Context(), l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		var data bytes.Buffer
		data.ReadFrom(tr)
		out[h.Name] = fmt.Sprintf("%c %o %d:%d %s", h.Typeflag, h.Mode, h.Uid, h.Gid, data.String())
	}
	return out
}

func TestFileMkfile(t *testing.T) {
	f := newFixture(t)
	base := f.layer(t, "users", func(root string) error {
		writeTree(t, root, map[string]string{"etc/passwd": "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n", "etc/group": "root:x:0:\napp:x:1000:\n"})
		return nil
	})
	st, err := base.Mkfile(llb.MkfileAction{Path: "/opt/app/run.sh", Data: []byte("#!/bin/sh\necho hi\n"), Mode: 0o755, Chown: &llb.ChownOpt{User: "app"}}, llb.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"opt/":           "5 755 1000:1000 ",
		"opt/app/":       "5 755 1000:1000 ",
		"opt/app/run.sh": "0 755 1000:1000 #!/bin/sh\necho hi\n",
	}
	if diff := cmp.Diff(want, f.layerMeta(t, st)); diff != "" {
		t.Errorf("layer (-want +got):\n%s", diff)
	}
}

func TestFileCopyOptions(t *testing.T) {
	f := newFixture(t)
	ctxDir := t.TempDir()
	writeTree(t, ctxDir, map[string]string{
		"app/main.go":   "main\n",
		"app/debug.log": "log\n",
		"app/sub/x.go":  "x\n",
		"secret.env":    "no\n",
		"docs/a/README": "a\n",
		"docs/b/README": "b\n",
	})
	writeTar(t, filepath.Join(ctxDir, "bundle.tar.gz"), map[string]string{"inner/one": "1\n"})
	local := f.local(t, "ctx", ctxDir, "secret.env")
	tests := []struct {
		name string
		cp   llb.CopyAction
		want []string
	}{{
		name: "exclude",
		cp:   llb.CopyAction{Src: []string{"app"}, Dest: "/dst/", Exclude: []string{"**/*.log"}},
		want: []string{"dst/", "dst/main.go", "dst/sub/", "dst/sub/x.go"},
	}, {
		name: "parents",
		cp:   llb.CopyAction{Src: []string{"docs/*/README"}, Dest: "/dst/", Parents: true, AllowWildcard: true},
		want: []string{"dst/", "dst/docs/", "dst/docs/a/", "dst/docs/a/README", "dst/docs/b/", "dst/docs/b/README"},
	}, {
		name: "auto extract",
		cp:   llb.CopyAction{Src: []string{"bundle.tar.gz"}, Dest: "/dst/", AutoExtract: true},
		want: []string{"dst/", "dst/inner/", "dst/inner/one"},
	}, {
		name: "ignored files are not there",
		cp:   llb.CopyAction{Src: []string{"/"}, Dest: "/dst/", Exclude: []string{"app", "docs", "*.tar.gz"}},
		want: []string{"dst/"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := llb.Scratch().Copy(local, tc.cp, llb.Meta{})
			if err != nil {
				t.Fatal(err)
			}
			got := slices.Sorted(maps.Keys(f.layerMeta(t, st)))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("layer entries (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFileCacheKey(t *testing.T) {
	f := newFixture(t)
	ctxDir := t.TempDir()
	writeTree(t, ctxDir, map[string]string{"app/main.go": "main\n", "app/debug.log": "log\n", "app/tmp.bak": "bak\n"})
	local := f.local(t, "ctx", ctxDir, "**/*.bak")
	st, err := llb.Scratch().Copy(local, llb.CopyAction{Src: []string{"app"}, Dest: "/app/", Exclude: []string{"*.log"}}, llb.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	key := func() string {
		t.Helper()
		srcOp, err := Resolver(f.d)(st.Vertex().Inputs()[0])
		if err != nil {
			t.Fatal(err)
		}
		ref, err := srcOp.Exec(t.Context(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		op, err := Resolver(f.d)(st.Vertex())
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
	for _, p := range []string{"app/debug.log", "app/tmp.bak"} {
		writeTree(t, ctxDir, map[string]string{p: "changed\n"})
		if key() != k0 {
			t.Errorf("key changed with %s, which the copy does not read", p)
		}
	}
	writeTree(t, ctxDir, map[string]string{"app/main.go": "changed\n"})
	if key() == k0 {
		t.Error("key did not change with a copied file")
	}
}

func writeTar(t *testing.T, path string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(data))
	}
	tw.Close()
	zw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
