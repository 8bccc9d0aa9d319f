package ops

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/llb"
)

// layerFiles reads the regular files of an image's layers, later layers winning.
func layerFiles(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				dt, _ := io.ReadAll(tr)
				files[strings.TrimPrefix(h.Name, "/")] = string(dt)
			}
		}
		rc.Close()
	}
	return files
}

func TestOCILayoutSource(t *testing.T) {
	d := remoteDeps(t)
	single, err := random.Image(512, 3)
	if err != nil {
		t.Fatal(err)
	}
	native, err := random.Image(256, 2)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	other := "s390x"
	if runtime.GOARCH == other {
		other = "riscv64"
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: foreign, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: other}}},
		mutate.IndexAddendum{Add: native, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(single); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx); err != nil {
		t.Fatal(err)
	}
	singleDigest, _ := single.Digest()
	idxDigest, _ := idx.Digest()

	tests := []struct {
		name string
		id   string
		want v1.Image
	}{
		{name: "manifest", id: llb.OCILayoutScheme + dir + "@" + singleDigest.String(), want: single},
		{name: "index picks linux/" + runtime.GOARCH, id: llb.OCILayoutScheme + dir + "@" + idxDigest.String(), want: native},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, ref := runSource(t, d, tc.id, nil)
			if key != "" {
				t.Errorf("pinned source has extra key %s, want none", key)
			}
			wantLayers, err := tc.want.Layers()
			if err != nil {
				t.Fatal(err)
			}
			if len(ref.Layers) != len(wantLayers) {
				t.Fatalf("got %d layers, want %d", len(ref.Layers), len(wantLayers))
			}
			for i, l := range wantLayers {
				dg, _ := l.Digest()
				diffID, _ := l.DiffID()
				if got := ref.Layers[i]; got.Digest.String() != dg.String() || got.DiffID.String() != diffID.String() {
					t.Errorf("layer %d = %s (diff id %s), want %s (%s)", i, got.Digest, got.DiffID, dg, diffID)
				}
				if !d.Content.Has(digest.Digest(dg.String())) {
					t.Errorf("layer %d blob is not in the content store", i)
				}
			}
			got, _ := viewRemoteRef(t, d, ref)
			want := layerFiles(t, tc.want)
			if len(want) == 0 {
				t.Fatal("the test image has no files")
			}
			for name, content := range want {
				if got[name].Content != content {
					t.Errorf("file %s differs from the image's layer", name)
				}
			}
		})
	}

	t.Run("run twice reuses blobs and snapshots", func(t *testing.T) {
		_, ref := runSource(t, d, tests[0].id, nil)
		if len(ref.Layers) != 3 {
			t.Fatalf("got %d layers, want 3", len(ref.Layers))
		}
	})

	t.Run("unpinned is keyed on the manifest", func(t *testing.T) {
		only := filepath.Join(t.TempDir(), "only")
		p, err := layout.Write(only, empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AppendImage(single); err != nil {
			t.Fatal(err)
		}
		key, _ := runSource(t, d, llb.OCILayoutScheme+only, nil)
		if key.String() != singleDigest.String() {
			t.Errorf("key = %s, want the manifest digest %s", key, singleDigest)
		}
	})
}

func TestOCILayoutSourceErrors(t *testing.T) {
	d := remoteDeps(t)
	img, err := random.Image(128, 2)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	h, _ := img.Digest()
	layers, _ := img.Layers()
	missingLayer, _ := layers[1].Digest()
	if err := os.Remove(filepath.Join(dir, "blobs", missingLayer.Algorithm, missingLayer.Hex)); err != nil {
		t.Fatal(err)
	}
	absent := filepath.Join(t.TempDir(), "absent")

	tests := []struct {
		name, id string
		says     []string
	}{
		{name: "missing layer blob", id: llb.OCILayoutScheme + dir + "@" + h.String(), says: []string{dir, missingLayer.String()}},
		{name: "missing layout", id: llb.OCILayoutScheme + absent + "@" + h.String(), says: []string{absent}},
		{name: "unknown manifest", id: llb.OCILayoutScheme + dir + "@sha256:" + strings.Repeat("0", 64), says: []string{dir, strings.Repeat("0", 64)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			op := resolveSource(t, d, tc.id, nil)
			_, err := op.CacheKey(t.Context(), nil)
			if err == nil {
				_, err = op.Exec(t.Context(), nil, io.Discard)
			}
			if err == nil {
				t.Fatal("succeeded, want error")
			}
			t.Logf("error: %v", err)
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}
