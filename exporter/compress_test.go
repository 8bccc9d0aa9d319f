package exporter_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/exporter"
	"github.com/builderdev/builder/exporter/exportertest"
	"github.com/builderdev/builder/internal/testutil"
)

// sniff tells a blob's compression from its magic bytes.
func sniff(dt []byte) exporter.Compression {
	switch {
	case bytes.HasPrefix(dt, []byte{0x1f, 0x8b}):
		return exporter.Gzip
	case bytes.HasPrefix(dt, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return exporter.Zstd
	}
	return exporter.Uncompressed
}

// tarOf decompresses blob and returns the tar inside.
func tarOf(t *testing.T, blob []byte) []byte {
	t.Helper()
	var r io.Reader = bytes.NewReader(blob)
	switch sniff(blob) {
	case exporter.Gzip:
		zr, err := pgzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case exporter.Zstd:
		zr, err := zstd.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	dt, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return dt
}

func level(n int) *int { return &n }

func TestConvert(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		want      exporter.Compress
		magic     exporter.Compression
		mediaType string
		reuse     bool // the committed gzip blob itself
	}{
		{"default is the committed blob", exporter.Compress{}, exporter.Gzip, string(types.OCILayer), true},
		{"gzip is the committed blob", exporter.Compress{Type: exporter.Gzip, Level: level(9)}, exporter.Gzip, string(types.OCILayer), true},
		{"forced gzip", exporter.Compress{Type: exporter.Gzip, Level: level(1), Force: true}, exporter.Gzip, string(types.OCILayer), false},
		{"zstd", exporter.Compress{Type: exporter.Zstd}, exporter.Zstd, string(types.OCILayerZStd), false},
		{"zstd level", exporter.Compress{Type: exporter.Zstd, Level: level(19)}, exporter.Zstd, string(types.OCILayerZStd), false},
		{"uncompressed", exporter.Compress{Type: exporter.Uncompressed}, exporter.Uncompressed, string(types.OCIUncompressedLayer), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cs := testutil.ContentStore(t)
			src := exportertest.Layer(t, cs, map[string]string{"a.txt": strings.Repeat("hello ", 1000), "b/c": "c\n"})
			srcBlob, err := cs.ReadAll(t.Context(), src.Digest)
			if err != nil {
				t.Fatal(err)
			}
			conv, err := exporter.NewConverter(cs, filepath.Join(t.TempDir(), "converted"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := conv.Convert(t.Context(), src, tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if got.DiffID != src.DiffID || got.MediaType != tc.mediaType {
				t.Errorf("converted layer = %+v, want diffID %s and media type %s", got, src.DiffID, tc.mediaType)
			}
			if (got.Digest == src.Digest) != tc.reuse {
				t.Errorf("converted digest %s, committed %s: reuse = %v, want %v", got.Digest, src.Digest, got.Digest == src.Digest, tc.reuse)
			}
			blob, err := cs.ReadAll(t.Context(), got.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(blob)) != got.Size || digest.FromBytes(blob) != got.Digest {
				t.Errorf("blob size/digest do not match the layer %+v", got)
			}
			if m := sniff(blob); m != tc.magic {
				t.Errorf("blob is %s, want %s", m, tc.magic)
			}
			if !bytes.Equal(tarOf(t, blob), tarOf(t, srcBlob)) {
				t.Error("converted blob holds another tar")
			}
			wantConversions := int64(1)
			if tc.reuse {
				wantConversions = 0
			}
			if n := exporter.Conversions(conv); n != wantConversions {
				t.Errorf("%d conversions, want %d", n, wantConversions)
			}
		})
	}
}

// TestConvertOnce: a layer is converted once; a second export, by this converter or
// by a new one on the same store (another process), reuses the blob. A record whose
// blob is gone is made again.
func TestConvertOnce(t *testing.T) {
	t.Parallel()
	cs := testutil.ContentStore(t)
	dir := filepath.Join(t.TempDir(), "converted")
	layers := []cache.Layer{
		exportertest.Layer(t, cs, map[string]string{"a": "a\n"}),
		exportertest.Layer(t, cs, map[string]string{"b": "b\n"}),
	}
	want := exporter.Compress{Type: exporter.Zstd}
	conv, err := exporter.NewConverter(cs, dir)
	if err != nil {
		t.Fatal(err)
	}
	first, err := conv.Layers(t.Context(), layers, want)
	if err != nil {
		t.Fatal(err)
	}
	if n := exporter.Conversions(conv); n != 2 {
		t.Fatalf("first export: %d conversions, want 2", n)
	}
	again, err := conv.Layers(t.Context(), layers, want)
	if err != nil {
		t.Fatal(err)
	}
	conv2, err := exporter.NewConverter(cs, dir)
	if err != nil {
		t.Fatal(err)
	}
	other, err := conv2.Layers(t.Context(), layers, want)
	if err != nil {
		t.Fatal(err)
	}
	if n := exporter.Conversions(conv) + exporter.Conversions(conv2); n != 2 {
		t.Errorf("after two more exports: %d conversions, want still 2", n)
	}
	for i := range first {
		if again[i] != first[i] || other[i] != first[i] {
			t.Errorf("layer %d: %+v, %+v, %+v differ", i, first[i], again[i], other[i])
		}
	}
	// A different level is another blob.
	if _, err := conv2.Convert(t.Context(), layers[0], exporter.Compress{Type: exporter.Zstd, Level: level(19)}); err != nil {
		t.Fatal(err)
	}
	if n := exporter.Conversions(conv2); n != 1 {
		t.Errorf("zstd level 19: %d conversions by the second converter, want 1", n)
	}
	// Prune the converted blob: the record no longer counts.
	if err := os.Remove(cs.Path(first[0].Digest)); err != nil {
		t.Fatal(err)
	}
	redo, err := conv2.Convert(t.Context(), layers[0], want)
	if err != nil {
		t.Fatal(err)
	}
	if redo != first[0] || !cs.Has(redo.Digest) {
		t.Errorf("reconverted %+v, want %+v back in the store", redo, first[0])
	}
}

// TestConvertBackToGzip: a zstd layer (a pulled base, say) becomes gzip for a gzip
// output, and an uncompressed blob already in the store is used as is.
func TestConvertBackToGzip(t *testing.T) {
	t.Parallel()
	cs := testutil.ContentStore(t)
	conv, err := exporter.NewConverter(cs, filepath.Join(t.TempDir(), "converted"))
	if err != nil {
		t.Fatal(err)
	}
	src := exportertest.Layer(t, cs, map[string]string{"a": "a\n"})
	z, err := conv.Convert(t.Context(), src, exporter.Compress{Type: exporter.Zstd})
	if err != nil {
		t.Fatal(err)
	}
	g, err := conv.Convert(t.Context(), z, exporter.Compress{})
	if err != nil {
		t.Fatal(err)
	}
	blob, _ := cs.ReadAll(t.Context(), g.Digest)
	if sniff(blob) != exporter.Gzip || g.DiffID != src.DiffID {
		t.Errorf("zstd → gzip gave %+v (%s)", g, sniff(blob))
	}
	u, err := conv.Convert(t.Context(), src, exporter.Compress{Type: exporter.Uncompressed})
	if err != nil {
		t.Fatal(err)
	}
	before := exporter.Conversions(conv)
	u2, err := conv.Convert(t.Context(), z, exporter.Compress{Type: exporter.Uncompressed})
	if err != nil {
		t.Fatal(err)
	}
	if u2 != u || u.Digest != src.DiffID || exporter.Conversions(conv) != before {
		t.Errorf("uncompressed blob not reused: %+v then %+v", u, u2)
	}
}

// TestConvertDetectsCorruption: a blob whose tar is not its diffID is refused and
// nothing is recorded.
func TestConvertDetectsCorruption(t *testing.T) {
	t.Parallel()
	cs := testutil.ContentStore(t)
	dir := filepath.Join(t.TempDir(), "converted")
	conv, err := exporter.NewConverter(cs, dir)
	if err != nil {
		t.Fatal(err)
	}
	l := exportertest.Layer(t, cs, map[string]string{"a": "a\n"})
	l.DiffID = digest.FromString("something else")
	if _, err := conv.Convert(t.Context(), l, exporter.Compress{Type: exporter.Zstd}); err == nil || !strings.Contains(err.Error(), "diffID") {
		t.Fatalf("Convert of a mislabelled layer: error = %v", err)
	}
	// No record may be left (the records dir is only made with the first record).
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 || err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("records dir after a failed conversion: %v, %v", ents, err)
	}
}

// TestZstdDeterministic: the same layer converted on two stores gives the same blob,
// so zstd outputs are as reproducible as gzip ones.
func TestZstdDeterministic(t *testing.T) {
	t.Parallel()
	var digests []digest.Digest
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7 % 251)
	}
	for range 2 {
		cs := testutil.ContentStore(t)
		conv, err := exporter.NewConverter(cs, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		l := exportertest.Layer(t, cs, map[string]string{"big": string(big)})
		z, err := conv.Convert(context.Background(), l, exporter.Compress{Type: exporter.Zstd})
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, z.Digest)
	}
	if digests[0] != digests[1] {
		t.Errorf("zstd conversions differ: %s vs %s", digests[0], digests[1])
	}
}

// TestImageMediaTypes: Docker media types for gzip and uncompressed layers, an error
// for zstd; annotations only with OCI types.
func TestImageMediaTypes(t *testing.T) {
	t.Parallel()
	cs := testutil.ContentStore(t)
	conv, err := exporter.NewConverter(cs, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, layers := exportertest.Image(t, cs)
	cfg := exportertest.Config(t, len(layers))

	img, err := exporter.Image(t.Context(), cs, layers, cfg, exporter.WithDockerMediaTypes())
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate.Image(docker): %v", err)
	}
	m, _ := img.Manifest()
	if m.MediaType != types.DockerManifestSchema2 || m.Config.MediaType != types.DockerConfigJSON || m.Layers[0].MediaType != types.DockerLayer {
		t.Errorf("docker manifest types: %s %s %s", m.MediaType, m.Config.MediaType, m.Layers[0].MediaType)
	}

	raw, err := conv.Layers(t.Context(), layers, exporter.Compress{Type: exporter.Uncompressed})
	if err != nil {
		t.Fatal(err)
	}
	img, err = exporter.Image(t.Context(), cs, raw, cfg, exporter.WithDockerMediaTypes())
	if err != nil {
		t.Fatal(err)
	}
	checkLayers(t, img)
	m, _ = img.Manifest()
	if m.Layers[0].MediaType != types.DockerUncompressedLayer {
		t.Errorf("uncompressed docker layer type %s", m.Layers[0].MediaType)
	}

	z, err := conv.Layers(t.Context(), layers, exporter.Compress{Type: exporter.Zstd})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exporter.Image(t.Context(), cs, z, cfg, exporter.WithDockerMediaTypes()); err == nil || !strings.Contains(err.Error(), "zstd") {
		t.Errorf("zstd with Docker media types: error = %v", err)
	}
	img, err = exporter.Image(t.Context(), cs, z, cfg, exporter.WithManifestAnnotations(map[string]string{"org.opencontainers.image.title": "t"}))
	if err != nil {
		t.Fatal(err)
	}
	checkLayers(t, img)
	m, _ = img.Manifest()
	if m.Layers[0].MediaType != types.OCILayerZStd || m.Annotations["org.opencontainers.image.title"] != "t" {
		t.Errorf("zstd manifest: layer type %s, annotations %v", m.Layers[0].MediaType, m.Annotations)
	}
	if _, err := exporter.Image(t.Context(), cs, layers, cfg, exporter.WithDockerMediaTypes(),
		exporter.WithManifestAnnotations(map[string]string{"a": "b"})); err == nil {
		t.Error("annotations with Docker media types: no error")
	}
}

// TestConvertedLayersReadBack: the tar of every converted blob reads as a tar.
func TestConvertedLayersReadBack(t *testing.T) {
	t.Parallel()
	cs := testutil.ContentStore(t)
	conv, err := exporter.NewConverter(cs, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l := exportertest.Layer(t, cs, map[string]string{"x/y": "z"})
	for _, c := range []exporter.Compression{exporter.Gzip, exporter.Zstd, exporter.Uncompressed} {
		got, err := conv.Convert(t.Context(), l, exporter.Compress{Type: c, Force: true})
		if err != nil {
			t.Fatal(err)
		}
		blob, _ := cs.ReadAll(t.Context(), got.Digest)
		tr := tar.NewReader(bytes.NewReader(tarOf(t, blob)))
		hdr, err := tr.Next()
		if err != nil || hdr.Name != "x/y" {
			t.Errorf("%s: first entry %v, %v", c, hdr, err)
		}
	}
}

// checkLayers checks every layer's blob and tar against its digest and diffID
// (validate.Image assumes gzip blobs).
func checkLayers(t *testing.T, img v1.Image) {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		for _, c := range []struct {
			open func() (io.ReadCloser, error)
			want func() (v1.Hash, error)
		}{{l.Compressed, l.Digest}, {l.Uncompressed, l.DiffID}} {
			rc, err := c.open()
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := v1.SHA256(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := c.want(); got != want {
				t.Errorf("layer content hashes to %s, want %s", got, want)
			}
		}
	}
}

func TestRecordedAndForget(t *testing.T) {
	t.Parallel()
	cs := testutil.ContentStore(t)
	conv, err := exporter.NewConverter(cs, filepath.Join(t.TempDir(), "converted"))
	if err != nil {
		t.Fatal(err)
	}
	l := exportertest.Layer(t, cs, map[string]string{"a": "a\n"})
	got, err := conv.Convert(t.Context(), l, exporter.Compress{Type: exporter.Zstd})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := conv.Recorded()
	if err != nil || len(recs) != 1 || recs[0].Layer != got {
		t.Fatalf("Recorded = %+v, %v; want the one conversion %+v", recs, err, got)
	}
	if err := conv.Forget(recs[0]); err != nil {
		t.Fatal(err)
	}
	if recs, err := conv.Recorded(); err != nil || len(recs) != 0 {
		t.Fatalf("Recorded after Forget = %+v, %v", recs, err)
	}
	if !cs.Has(got.Digest) {
		t.Fatal("Forget removed the converted blob; only the record should go")
	}
}
