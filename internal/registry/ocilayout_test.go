package registry

import (
	"bytes"
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
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// layoutFixture is an OCI layout with two tagged images and a tagged multi-platform
// index.
type layoutFixture struct {
	dir            string
	one, two       v1.Image
	native, other  v1.Image // the index's linux/GOARCH and foreign images
	index          v1.ImageIndex
	onlyDir        string // a layout holding only image one, untagged
	onlyIndexDir   string // a layout holding only the index, untagged
	noPlatformsDir string // a layout whose index has no linux/GOARCH image
}

func newLayoutFixture(t *testing.T) layoutFixture {
	t.Helper()
	var fx layoutFixture
	var err error
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	fx.one, err = random.Image(256, 2)
	must(err)
	fx.two, err = random.Image(256, 1)
	must(err)
	fx.native, err = random.Image(128, 1)
	must(err)
	fx.other, err = random.Image(128, 1)
	must(err)
	foreign := "s390x"
	if runtime.GOARCH == foreign {
		foreign = "riscv64"
	}
	fx.index = mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: fx.other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: foreign}}},
		mutate.IndexAddendum{Add: fx.native, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	tag := func(name string) layout.Option {
		return layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: name})
	}

	fx.dir = filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(fx.dir, empty.Index)
	must(err)
	must(p.AppendImage(fx.one, tag("v1")))
	must(p.AppendImage(fx.two, tag("v2")))
	must(p.AppendIndex(fx.index, tag("multi")))

	fx.onlyDir = filepath.Join(t.TempDir(), "only")
	p, err = layout.Write(fx.onlyDir, empty.Index)
	must(err)
	must(p.AppendImage(fx.one))

	fx.onlyIndexDir = filepath.Join(t.TempDir(), "only-index")
	p, err = layout.Write(fx.onlyIndexDir, empty.Index)
	must(err)
	must(p.AppendIndex(fx.index))

	fx.noPlatformsDir = filepath.Join(t.TempDir(), "foreign")
	p, err = layout.Write(fx.noPlatformsDir, empty.Index)
	must(err)
	must(p.AppendIndex(mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: fx.other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: foreign}}},
	)))
	return fx
}

func digestOf(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestResolveOCILayout(t *testing.T) {
	fx := newLayoutFixture(t)
	idxDigest, err := fx.index.Digest()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ref  string
		want v1.Image
		dir  string
	}{
		{name: "only manifest", ref: "oci-layout://" + fx.onlyDir, want: fx.one, dir: fx.onlyDir},
		{name: "only index picks platform", ref: "oci-layout://" + fx.onlyIndexDir, want: fx.native, dir: fx.onlyIndexDir},
		{name: "tag", ref: "oci-layout://" + fx.dir + ":v2", want: fx.two, dir: fx.dir},
		{name: "tag of index", ref: "oci-layout://" + fx.dir + ":multi", want: fx.native, dir: fx.dir},
		{name: "digest", ref: "oci-layout://" + fx.dir + "@" + digestOf(t, fx.one).String(), want: fx.one, dir: fx.dir},
		{name: "digest of index", ref: "oci-layout://" + fx.dir + "@" + idxDigest.String(), want: fx.native, dir: fx.dir},
		{name: "digest of nested image", ref: "oci-layout://" + fx.dir + "@" + digestOf(t, fx.other).String(), want: fx.other, dir: fx.dir},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pinned, cfg, err := ResolveOCILayout(t.Context(), tc.ref)
			if err != nil {
				t.Fatalf("ResolveOCILayout(%q): %v", tc.ref, err)
			}
			if want := "oci-layout://" + tc.dir + "@" + digestOf(t, tc.want).String(); pinned != want {
				t.Errorf("pinned = %q, want %q", pinned, want)
			}
			wantCfg, err := tc.want.RawConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(cfg, wantCfg) {
				t.Errorf("config = %s, want %s", cfg, wantCfg)
			}
		})
	}
}

func TestResolveOCILayoutRelativePath(t *testing.T) {
	fx := newLayoutFixture(t)
	t.Chdir(filepath.Dir(fx.dir))
	pinned, _, err := ResolveOCILayout(t.Context(), "oci-layout://layout:v1")
	if err != nil {
		t.Fatal(err)
	}
	if want := "oci-layout://" + fx.dir + "@" + digestOf(t, fx.one).String(); pinned != want {
		t.Errorf("pinned = %q, want %q", pinned, want)
	}
}

func TestOpenOCILayoutBlobs(t *testing.T) {
	fx := newLayoutFixture(t)
	img, err := OpenOCILayout(t.Context(), "oci-layout://"+fx.dir+":v1")
	if err != nil {
		t.Fatal(err)
	}
	layers, err := fx.one.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Manifest.Layers) != len(layers) {
		t.Fatalf("manifest has %d layers, want %d", len(img.Manifest.Layers), len(layers))
	}
	for i, l := range layers {
		want, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		wantBytes, _ := io.ReadAll(want)
		rc, err := img.Blob(img.Manifest.Layers[i].Digest)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, wantBytes) {
			t.Errorf("layer %d: blob differs from the image's", i)
		}
	}
}

func TestResolveOCILayoutErrors(t *testing.T) {
	fx := newLayoutFixture(t)
	corrupt := filepath.Join(t.TempDir(), "corrupt")
	p, err := layout.Write(corrupt, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(fx.one); err != nil {
		t.Fatal(err)
	}
	h := digestOf(t, fx.one)
	if err := os.WriteFile(filepath.Join(corrupt, "blobs", h.Algorithm, h.Hex), []byte(`{"schemaVersion":2}`), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "nothing-here")
	tests := []struct {
		name, ref, names, says string
	}{
		{name: "several manifests", ref: "oci-layout://" + fx.dir, names: fx.dir, says: "3 manifests"},
		{name: "unknown tag", ref: "oci-layout://" + fx.dir + ":v9", names: fx.dir, says: `"v9"`},
		{name: "unknown digest", ref: "oci-layout://" + fx.dir + "@sha256:" + strings.Repeat("ab", 32), names: fx.dir, says: "sha256:abab"},
		{name: "no such dir", ref: "oci-layout://" + missing, names: missing},
		{name: "no platform", ref: "oci-layout://" + fx.noPlatformsDir, names: fx.noPlatformsDir, says: "no image for platform linux/" + runtime.GOARCH},
		{name: "corrupt manifest", ref: "oci-layout://" + corrupt, names: corrupt, says: "has digest"},
		{name: "bad digest", ref: "oci-layout://" + fx.dir + "@sha256:zz", says: "sha256:zz"},
		{name: "no path", ref: "oci-layout://", says: "PATH"},
		{name: "wrong scheme", ref: "docker-image://busybox", says: "oci-layout://"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ResolveOCILayout(t.Context(), tc.ref)
			if err == nil {
				t.Fatalf("ResolveOCILayout(%q) succeeded, want error", tc.ref)
			}
			if !strings.Contains(err.Error(), tc.names) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q should name %q and say %q", err, tc.names, tc.says)
			}
		})
	}
}
