package diff

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/pgzip"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/builderdev/builder/internal/testutil"
)

// capNetBindService is a security.capability value (VFS_CAP_REVISION_2, effective,
// permitted CAP_NET_BIND_SERVICE).
func capNetBindService() string {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000001)
	binary.LittleEndian.PutUint32(b[4:], 1<<10)
	return string(b)
}

// upperTree is an overlay upper dir with one of everything.
func upperTree() []node {
	return []node{
		{path: "a", kind: "dir", mode: 0o755},
		{path: "a/fifo", kind: "fifo", mode: 0o640},
		{path: "a/hl1", kind: "file", mode: 0o644, data: "linked"},
		{path: "a/hl2", kind: "hardlink", data: "a/hl1"},
		{path: "bin", kind: "dir", mode: 0o755},
		{path: "bin/ping", kind: "file", mode: 0o755, data: "#!/bin/sh\n", xattrs: map[string]string{"security.capability": capNetBindService()}},
		{path: "bin/su", kind: "file", mode: 0o4755, data: "su"},
		{path: "dev", kind: "dir", mode: 0o755},
		{path: "dev/loop9", kind: "block", mode: 0o660, dev: [2]uint32{7, 9}},
		{path: "dev/null", kind: "char", mode: 0o666, dev: [2]uint32{1, 3}},
		{path: "etc", kind: "dir", mode: 0o755, xattrs: map[string]string{"trusted.overlay.origin": "junk", "trusted.overlay.impure": "y"}},
		{path: "etc/passwd", kind: "file", mode: 0o644, data: "root:x:0:0::/root:/bin/sh\n", xattrs: map[string]string{"user.note": "kept"}},
		{path: "gone", kind: "whiteout"},
		{path: "home", kind: "dir", mode: 0o755},
		{path: "home/user", kind: "dir", mode: 0o2750, uid: 1000, gid: 1000},
		{path: "home/user/file", kind: "file", mode: 0o600, uid: 1000, gid: 1000, data: "mine"},
		{path: "link", kind: "symlink", data: "bin/su"},
		{path: "opq", kind: "dir", mode: 0o755, xattrs: map[string]string{"trusted.overlay.opaque": "y"}},
		{path: "opq/new", kind: "file", mode: 0o644, data: "new"},
		{path: "opq/old", kind: "whiteout"},
		{path: "tmp", kind: "dir", mode: 0o1777},
	}
}

func TestWriteLayerRoundTrip(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := t.Context()
	upper := t.TempDir()
	buildTree(t, upper, upperTree(), time.Unix(1700000000, 0))
	cs := testutil.ContentStore(t)

	layer, empty, err := WriteLayer(ctx, cs, upper)
	if err != nil {
		t.Fatal(err)
	}
	if empty {
		t.Fatal("empty = true for a non-empty upper dir")
	}
	if layer.MediaType != ocispec.MediaTypeImageLayerGzip {
		t.Errorf("media type = %q", layer.MediaType)
	}
	if size, err := cs.Size(layer.Digest); err != nil || size != layer.Size {
		t.Errorf("store size of %s = %d, %v; layer says %d", layer.Digest, size, err, layer.Size)
	}

	caps := map[string]string{"security.capability": capNetBindService()}
	want := []tarEntry{
		{Name: "a/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "a/fifo", Type: tar.TypeFifo, Mode: 0o640},
		{Name: "a/hl1", Type: tar.TypeReg, Mode: 0o644, Size: 6},
		{Name: "a/hl2", Type: tar.TypeLink, Mode: 0o644, Linkname: "a/hl1"},
		{Name: "bin/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "bin/ping", Type: tar.TypeReg, Mode: 0o755, Size: 10, Xattrs: caps},
		{Name: "bin/su", Type: tar.TypeReg, Mode: 0o4755, Size: 2},
		{Name: "dev/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "dev/loop9", Type: tar.TypeBlock, Mode: 0o660, Dev: "7:9"},
		{Name: "dev/null", Type: tar.TypeChar, Mode: 0o666, Dev: "1:3"},
		{Name: "etc/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "etc/passwd", Type: tar.TypeReg, Mode: 0o644, Size: 26, Xattrs: map[string]string{"user.note": "kept"}},
		{Name: ".wh.gone", Type: tar.TypeReg},
		{Name: "home/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "home/user/", Type: tar.TypeDir, Mode: 0o2750, Uid: 1000, Gid: 1000},
		{Name: "home/user/file", Type: tar.TypeReg, Mode: 0o600, Uid: 1000, Gid: 1000, Size: 4},
		{Name: "link", Type: tar.TypeSymlink, Mode: 0o777, Linkname: "bin/su"},
		{Name: "opq/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "opq/.wh..wh..opq", Type: tar.TypeReg, Mode: 0o755},
		{Name: "opq/new", Type: tar.TypeReg, Mode: 0o644, Size: 3},
		{Name: "opq/.wh.old", Type: tar.TypeReg},
		{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
	}
	if diff := cmp.Diff(want, readBlob(t, cs, layer)); diff != "" {
		t.Errorf("layer entries (-want +got):\n%s", diff)
	}

	// Extracting gives back the overlay form: same tree, trusted.overlay.* bookkeeping
	// other than the opaque marker gone.
	f, err := cs.Open(ctx, layer.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dst := filepath.Join(t.TempDir(), "snapshot")
	diffID, err := Apply(ctx, f, dst)
	if err != nil {
		t.Fatal(err)
	}
	if diffID != layer.DiffID {
		t.Errorf("Apply DiffID = %s, WriteLayer DiffID = %s", diffID, layer.DiffID)
	}
	if diff := cmp.Diff(scanTree(t, upper), scanTree(t, dst)); diff != "" {
		t.Errorf("extracted tree (-want +got):\n%s", diff)
	}
	// The whiteouts and the opaque marker must be in the extracted form, not just
	// equal to the source: check them directly too.
	got := scanTree(t, dst)
	if fi := got["gone"]; fi.Type != "char" || fi.Rdev != "0:0" {
		t.Errorf("gone = %+v, want a 0/0 char device", fi)
	}
	if fi := got["opq"]; fi.Xattrs["trusted.overlay.opaque"] != "y" {
		t.Errorf("opq xattrs = %v, want trusted.overlay.opaque=y", fi.Xattrs)
	}
}

func TestWriteLayerEmpty(t *testing.T) {
	ctx := t.Context()
	cs := testutil.ContentStore(t)
	storeDir := filepath.Dir(cs.Path("sha256:0000000000000000000000000000000000000000000000000000000000000000"))
	layer, empty, err := WriteLayer(ctx, cs, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !empty {
		t.Errorf("empty = false for an empty upper dir (layer %+v)", layer)
	}
	if layer.Digest != "" {
		t.Errorf("layer = %+v, want zero", layer)
	}
	blobs, err := os.ReadDir(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(blobs) != 0 {
		t.Errorf("store holds %d blobs after an empty layer, want 0", len(blobs))
	}
}

func TestWriteLayerDeterministic(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := t.Context()
	cs := testutil.ContentStore(t)
	epoch := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

	write := func(t *testing.T, dir string, opts ...Option) ocispec.Descriptor {
		t.Helper()
		l, _, err := WriteLayer(ctx, cs, dir, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return ocispec.Descriptor{Digest: l.Digest, Size: l.Size, Annotations: map[string]string{"diffID": l.DiffID.String()}}
	}
	older, newer := t.TempDir(), t.TempDir()
	buildTree(t, older, upperTree(), time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC))
	buildTree(t, newer, upperTree(), time.Date(2025, 7, 2, 11, 30, 0, 500, time.UTC))

	tests := []struct {
		name     string
		a, b     string
		aOpts    []Option
		bOpts    []Option
		wantSame bool
	}{
		{name: "same tree twice", a: older, b: older, wantSame: true},
		{name: "compression blocks do not change bytes", a: older, b: older, bOpts: []Option{WithCompressionBlocks(1)}, wantSame: true},
		{name: "different mtimes differ", a: older, b: newer, wantSame: false},
		{name: "source date epoch clamps mtimes", a: older, b: newer, aOpts: []Option{WithSourceDateEpoch(epoch)}, bOpts: []Option{WithSourceDateEpoch(epoch)}, wantSame: true},
		{name: "compression level changes the blob", a: older, b: older, bOpts: []Option{WithCompressionLevel(pgzip.BestSpeed)}, wantSame: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := write(t, tc.a, tc.aOpts...), write(t, tc.b, tc.bOpts...)
			if same := cmp.Equal(a, b); same != tc.wantSame {
				t.Errorf("same = %v, want %v\na: %+v\nb: %+v", same, tc.wantSame, a, b)
			}
		})
	}

	// Clamping changes only the times later than the epoch.
	old := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	buildTree(t, dir, []node{{path: "f", kind: "file", mode: 0o644, data: "x"}}, old)
	l, _, err := WriteLayer(ctx, cs, dir, WithSourceDateEpoch(epoch))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cs.Open(ctx, l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	zr, err := pgzip.NewReader(rc)
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := tar.NewReader(zr).Next()
	if err != nil {
		t.Fatal(err)
	}
	if !hdr.ModTime.Equal(old) {
		t.Errorf("mtime of f = %v, want %v (older than the epoch, kept)", hdr.ModTime, old)
	}
}

func TestWriteLayerOptions(t *testing.T) {
	tests := []struct {
		name string
		opt  Option
	}{
		{name: "level too high", opt: WithCompressionLevel(10)},
		{name: "level too low", opt: WithCompressionLevel(-3)},
		{name: "zero blocks", opt: WithCompressionBlocks(0)},
		{name: "zero epoch", opt: WithSourceDateEpoch(time.Time{})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, _, err := WriteLayer(t.Context(), testutil.ContentStore(t), dir, tc.opt); err == nil {
				t.Error("WriteLayer accepted an invalid option")
			}
		})
	}
}

// TestWriteLayerCancel checks that a cancelled context stops the walk and leaves no blob.
func TestWriteLayerCancel(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cs := testutil.ContentStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := WriteLayer(ctx, cs, dir); err == nil {
		t.Fatal("WriteLayer with a cancelled context succeeded")
	}
	blobs, _ := os.ReadDir(filepath.Dir(cs.Path("sha256:0000000000000000000000000000000000000000000000000000000000000000")))
	if len(blobs) != 0 {
		t.Errorf("store holds %d blobs after a cancelled write", len(blobs))
	}
}
