package diff

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/internal/testutil"
)

// applyFixture is a temp dir holding the extraction root and a canary directory next to it
// that escaping entries would hit.
type applyFixture struct {
	base, root, outside string
}

func newApplyFixture(t testing.TB) applyFixture {
	t.Helper()
	base := t.TempDir()
	fx := applyFixture{base: base, root: filepath.Join(base, "root"), outside: filepath.Join(base, "outside")}
	if err := os.Mkdir(fx.outside, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fx.outside, "x"), []byte("canary"), 0o600); err != nil {
		t.Fatal(err)
	}
	return fx
}

// checkContained fails if anything in base besides root changed.
func (fx applyFixture) checkContained(t testing.TB, before map[string]fileInfo) {
	t.Helper()
	ents, err := os.ReadDir(fx.base)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "root" && e.Name() != "outside" {
			t.Errorf("Apply wrote %s outside its root", filepath.Join(fx.base, e.Name()))
		}
	}
	after := scanTree(t, fx.outside)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("directory outside the root changed (-before +after):\n%s", diff)
	}
}

func TestApplyMalicious(t *testing.T) {
	testutil.RequiresRoot(t)

	tests := []struct {
		name    string
		files   func(fx applyFixture) []tarFile
		wantErr string            // substring; empty means success
		want    map[string]string // paths below root that must exist, with their type
		bare    string            // a path below root that must have no xattrs
	}{
		{
			name:    "dotdot escape",
			files:   func(applyFixture) []tarFile { return []tarFile{{hdr: tar.Header{Name: "../escape"}, data: "x"}} },
			wantErr: `"../escape"`,
		},
		{
			name: "dotdot escape in the middle",
			files: func(applyFixture) []tarFile {
				return []tarFile{{hdr: tar.Header{Name: "a/../../outside/x"}, data: "x"}}
			},
			wantErr: "escapes",
		},
		{
			name: "absolute name stays inside",
			files: func(fx applyFixture) []tarFile {
				return []tarFile{{hdr: tar.Header{Name: filepath.Join(fx.outside, "abs")}, data: "x"}}
			},
			want: map[string]string{"@outside/abs": "file"},
		},
		{
			name: "through absolute symlink",
			files: func(fx applyFixture) []tarFile {
				return []tarFile{
					{hdr: tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: fx.outside}},
					{hdr: tar.Header{Name: "evil/file"}, data: "x"},
				}
			},
			want: map[string]string{"evil": "symlink", "@outside/file": "file"},
		},
		{
			name: "through relative symlink",
			files: func(applyFixture) []tarFile {
				return []tarFile{
					{hdr: tar.Header{Name: "a/evil", Typeflag: tar.TypeSymlink, Linkname: "../../../../../../outside"}},
					{hdr: tar.Header{Name: "a/evil/file"}, data: "x"},
				}
			},
			want: map[string]string{"a/evil": "symlink", "outside/file": "file"},
		},
		{
			// Checks that the resolved-parent memo is dropped when a directory turns
			// into a symlink between two entries in it.
			name: "dir replaced by symlink between entries",
			files: func(fx applyFixture) []tarFile {
				return []tarFile{
					{hdr: tar.Header{Name: "d/x"}, data: "x"},
					{hdr: tar.Header{Name: "d", Typeflag: tar.TypeSymlink, Linkname: fx.outside}},
					{hdr: tar.Header{Name: "d/y"}, data: "y"},
				}
			},
			want: map[string]string{"d": "symlink", "@outside/y": "file"},
		},
		{
			name: "over a symlink to a file",
			files: func(fx applyFixture) []tarFile {
				return []tarFile{
					{hdr: tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: filepath.Join(fx.outside, "x")}},
					{hdr: tar.Header{Name: "evil"}, data: "replaced"},
				}
			},
			want: map[string]string{"evil": "file"},
		},
		{
			name: "dir over a symlink",
			files: func(fx applyFixture) []tarFile {
				return []tarFile{
					{hdr: tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: fx.outside}},
					{hdr: tar.Header{Name: "evil/", Typeflag: tar.TypeDir, Mode: 0o777}},
				}
			},
			want: map[string]string{"evil": "dir"},
		},
		{
			name: "hardlink to outside",
			files: func(applyFixture) []tarFile {
				return []tarFile{{hdr: tar.Header{Name: "passwd", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}}}
			},
			wantErr: `entry "passwd": hardlink to "../../etc/passwd" points outside the layer`,
		},
		{
			name: "hardlink through symlink",
			files: func(fx applyFixture) []tarFile {
				return []tarFile{
					{hdr: tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: fx.outside}},
					{hdr: tar.Header{Name: "stolen", Typeflag: tar.TypeLink, Linkname: "evil/x"}},
				}
			},
			wantErr: `entry "stolen"`,
		},
		{
			name: "hardlink to absolute name stays inside",
			files: func(applyFixture) []tarFile {
				return []tarFile{
					{hdr: tar.Header{Name: "etc/passwd"}, data: "root"},
					{hdr: tar.Header{Name: "pw", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}},
				}
			},
			want: map[string]string{"etc": "dir", "etc/passwd": "file", "pw": "file"},
		},
		{
			name: "whiteout through symlink",
			files: func(fx applyFixture) []tarFile {
				return []tarFile{
					{hdr: tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: fx.outside}},
					{hdr: tar.Header{Name: "evil/.wh.x"}},
				}
			},
			want: map[string]string{"@outside/x": "char"},
		},
		{
			name: "opaque through symlink",
			files: func(fx applyFixture) []tarFile {
				return []tarFile{
					{hdr: tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: fx.outside}},
					{hdr: tar.Header{Name: "evil/.wh..wh..opq"}},
				}
			},
			want: map[string]string{"evil": "symlink", "@outside": "dir"},
		},
		{
			name:    "whiteout of dotdot",
			files:   func(applyFixture) []tarFile { return []tarFile{{hdr: tar.Header{Name: "a/.wh..."}}} },
			wantErr: "invalid whiteout",
		},
		{
			name: "forged overlay xattr is dropped",
			files: func(applyFixture) []tarFile {
				return []tarFile{{hdr: tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755, PAXRecords: map[string]string{
					"SCHILY.xattr.trusted.overlay.opaque":   "y",
					"SCHILY.xattr.trusted.overlay.redirect": "/etc",
				}}}}
			},
			want: map[string]string{"d": "dir"},
			bare: "d",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fx := newApplyFixture(t)
			before := scanTree(t, fx.outside)
			blob := makeTar(t, tc.files(fx)...)
			_, err := Apply(t.Context(), bytes.NewReader(blob), fx.root)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Apply: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("Apply succeeded, want error containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("Apply error = %q, want it to contain %q", err, tc.wantErr)
			}
			fx.checkContained(t, before)

			got := scanTree(t, fx.root)
			for p, typ := range tc.want {
				// "@outside" stands for the canary's absolute path re-rooted inside root.
				p = strings.Replace(p, "@outside", strings.TrimPrefix(fx.outside, "/"), 1)
				if got[p].Type != typ {
					t.Errorf("%s is %q, want %q", p, got[p].Type, typ)
				}
			}
			if tc.bare != "" && len(got[tc.bare].Xattrs) != 0 {
				t.Errorf("%s has xattrs %v, want none", tc.bare, got[tc.bare].Xattrs)
			}
		})
	}
}

func TestApplyFormats(t *testing.T) {
	testutil.RequiresRoot(t)
	plain := makeTar(t,
		tarFile{hdr: tar.Header{Name: "dir/", Typeflag: tar.TypeDir, Mode: 0o755}},
		tarFile{hdr: tar.Header{Name: "dir/file", Mode: 0o640}, data: strings.Repeat("hello ", 1000)},
	)
	wantDiffID := digest.FromBytes(plain)

	var gz bytes.Buffer
	zw := pgzip.NewWriter(&gz)
	zw.Write(plain)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	var zs bytes.Buffer
	enc, err := zstd.NewWriter(&zs)
	if err != nil {
		t.Fatal(err)
	}
	enc.Write(plain)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		blob []byte
		want digest.Digest
	}{
		{name: "plain", blob: plain, want: wantDiffID},
		{name: "gzip", blob: gz.Bytes(), want: wantDiffID},
		{name: "zstd", blob: zs.Bytes(), want: wantDiffID},
		{name: "empty stream", blob: nil, want: digest.FromBytes(nil)},
		// Only the 1024-byte end marker: the empty layer some tools write.
		{name: "end of archive only", blob: make([]byte, 1024), want: digest.FromBytes(make([]byte, 1024))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r := bytes.NewReader(tc.blob)
			got, err := Apply(t.Context(), r, dir)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("DiffID = %s, want %s", got, tc.want)
			}
			if r.Len() != 0 {
				t.Errorf("Apply left %d bytes of the blob unread", r.Len())
			}
			if len(tc.blob) > 1024 {
				dt, err := os.ReadFile(filepath.Join(dir, "dir/file"))
				if err != nil || len(dt) != 6000 {
					t.Errorf("dir/file: %d bytes, %v", len(dt), err)
				}
			}
		})
	}
}

// TestApplyWhiteouts covers the OCI rules a layer tar may exercise that WriteLayer never
// produces: whiteouts over existing content, whiteouts next to their own layer's files,
// reserved .wh..wh. names, implicit parents.
func TestApplyWhiteouts(t *testing.T) {
	testutil.RequiresRoot(t)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pre/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	blob := makeTar(t,
		tarFile{hdr: tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755}},
		tarFile{hdr: tar.Header{Name: "same"}, data: "kept"},
		tarFile{hdr: tar.Header{Name: ".wh.same"}},     // same layer: must not remove "same"
		tarFile{hdr: tar.Header{Name: ".wh.pre"}},      // removes the existing tree
		tarFile{hdr: tar.Header{Name: ".wh..wh.plnk"}}, // aufs metadata: ignored
		tarFile{hdr: tar.Header{Name: "x/y/.wh.z"}},    // implicit parents
		tarFile{hdr: tar.Header{Name: "x/y/.wh..wh..opq"}},
	)
	if _, err := Apply(t.Context(), bytes.NewReader(blob), dir); err != nil {
		t.Fatal(err)
	}
	got := scanTree(t, dir)
	simple := map[string]string{}
	for p, fi := range got {
		s := fi.Type
		if fi.Type == "char" {
			s += " " + fi.Rdev
		}
		if fi.Type == "dir" {
			s += fmt.Sprintf(" %o", fi.Mode)
		}
		if fi.Xattrs["trusted.overlay.opaque"] == "y" {
			s += " opaque"
		}
		simple[p] = s
	}
	want := map[string]string{
		"same":  "file",
		"pre":   "char 0:0",
		"x":     "dir 755",
		"x/y":   "dir 755 opaque",
		"x/y/z": "char 0:0",
	}
	if diff := cmp.Diff(want, simple); diff != "" {
		t.Errorf("extracted tree (-want +got):\n%s", diff)
	}
}
