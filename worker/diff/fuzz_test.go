package diff

import (
	"archive/tar"
	"bytes"
	"testing"

	"github.com/klauspost/pgzip"
)

// FuzzApply feeds arbitrary blobs to Apply: it may fail, but it must not panic or touch
// anything outside its target directory.
func FuzzApply(f *testing.F) {
	seeds := [][]tarFile{
		{
			{hdr: tar.Header{Name: "dir/", Typeflag: tar.TypeDir, Mode: 0o755}},
			{hdr: tar.Header{Name: "dir/file", Mode: 0o4755, Uid: 1000, Gid: 1000}, data: "hello"},
			{hdr: tar.Header{Name: "dir/link", Typeflag: tar.TypeLink, Linkname: "dir/file"}},
			{hdr: tar.Header{Name: "sym", Typeflag: tar.TypeSymlink, Linkname: "dir"}},
		},
		{
			{hdr: tar.Header{Name: ".wh.gone"}},
			{hdr: tar.Header{Name: "opq/.wh..wh..opq"}},
			{hdr: tar.Header{Name: "fifo", Typeflag: tar.TypeFifo}},
			{hdr: tar.Header{Name: "f", PAXRecords: map[string]string{"SCHILY.xattr.user.a": "b"}}, data: "x"},
		},
		{
			{hdr: tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: "../outside"}},
			{hdr: tar.Header{Name: "evil/x"}, data: "pwned"},
			{hdr: tar.Header{Name: "evil/.wh.x"}},
		},
		{{hdr: tar.Header{Name: "../outside/x"}, data: "pwned"}},
		{{hdr: tar.Header{Name: "hl", Typeflag: tar.TypeLink, Linkname: "../outside/x"}}},
	}
	for _, s := range seeds {
		plain := makeTar(f, s...)
		f.Add(plain)
		var gz bytes.Buffer
		zw := pgzip.NewWriter(&gz)
		zw.Write(plain)
		zw.Close()
		f.Add(gz.Bytes())
	}
	f.Fuzz(func(t *testing.T, blob []byte) {
		fx := newApplyFixture(t)
		before := scanTree(t, fx.outside)
		_, _ = Apply(t.Context(), bytes.NewReader(blob), fx.root)
		fx.checkContained(t, before)
	})
}
