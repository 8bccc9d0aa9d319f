package ocilayout_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
	"github.com/builderdev/builder/exporter"
	"github.com/builderdev/builder/exporter/exportertest"
	"github.com/builderdev/builder/exporter/ocilayout"
	"github.com/builderdev/builder/internal/testutil"
)

// multiPlatform is an index of an amd64 and an arm64 image sharing a base layer.
func multiPlatform(t *testing.T, cs *content.Store) (v1.ImageIndex, map[string]v1.Hash) {
	t.Helper()
	shared := exportertest.Layer(t, cs, map[string]string{"etc/os-release": "ID=test\n"})
	var images []exporter.PlatformImage
	digests := map[string]v1.Hash{}
	for _, arch := range []string{"amd64", "arm64"} {
		layers := []cache.Layer{shared, exportertest.Layer(t, cs, map[string]string{"arch": arch + "\n"})}
		cfg := strings.Replace(string(exportertest.Config(t, len(layers))), `"architecture":"amd64"`, `"architecture":"`+arch+`"`, 1)
		img, err := exporter.Image(context.Background(), cs, layers, []byte(cfg))
		if err != nil {
			t.Fatal(err)
		}
		digests[arch], _ = img.Digest()
		images = append(images, exporter.PlatformImage{Platform: v1.Platform{OS: "linux", Architecture: arch}, Image: img})
	}
	idx, err := exporter.Index(images)
	if err != nil {
		t.Fatal(err)
	}
	return idx, digests
}

// checkIndexLayout reads the layout at dir: index.json has one entry per name, each
// pointing at mp, and mp lists each platform's manifest with its platform.
func checkIndexLayout(t *testing.T, dir string, mp v1.ImageIndex, digests map[string]v1.Hash, wantRefNames []string) {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(top); err != nil {
		t.Fatalf("validate.Index: %v", err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := mp.Digest()
	var refNames []string
	for _, d := range im.Manifests {
		if d.Digest != want || d.MediaType != types.OCIImageIndex {
			t.Errorf("index.json entry %s %s, want %s %s", d.MediaType, d.Digest, types.OCIImageIndex, want)
		}
		if d.Platform != nil {
			t.Errorf("index.json entry for the index has platform %v", d.Platform)
		}
		if d.Annotations[ocispec.AnnotationCreated] == "" {
			t.Errorf("index.json entry lacks %s: %v", ocispec.AnnotationCreated, d.Annotations)
		}
		refNames = append(refNames, d.Annotations[ocispec.AnnotationRefName])
	}
	if diff := cmp.Diff(wantRefNames, refNames); diff != "" {
		t.Errorf("ref names (-want +got):\n%s", diff)
	}
	child, err := top.ImageIndex(want)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := child.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]v1.Hash{}
	for _, d := range cm.Manifests {
		if d.Platform == nil {
			t.Fatalf("manifest %s has no platform", d.Digest)
		}
		got[d.Platform.Architecture] = d.Digest
		img, err := child.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Errorf("validate.Image(%s): %v", d.Platform.String(), err)
		}
	}
	if diff := cmp.Diff(digests, got); diff != "" {
		t.Errorf("platform manifests (-want +got):\n%s", diff)
	}
}

func TestExportIndex(t *testing.T) {
	cs := testutil.ContentStore(t)
	mp, digests := multiPlatform(t, cs)
	names := []string{"app:v1", "app:v2"}

	t.Run("dir", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "layout")
		if err := (ocilayout.Config{Dest: dest, Names: names}).ExportIndex(t.Context(), mp); err != nil {
			t.Fatal(err)
		}
		checkIndexLayout(t, dest, mp, digests, []string{"v1", "v2"})
		exportertest.DirHolds(t, filepath.Dir(dest), "layout")
	})
	t.Run("tar", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "layout.tar")
		if err := (ocilayout.Config{Dest: dest, Tar: true}).ExportIndex(t.Context(), mp); err != nil {
			t.Fatal(err)
		}
		dir := untar(t, dest)
		checkIndexLayout(t, dir, mp, digests, []string{""})
		// The shared layer is stored once: 3 layers, 2 configs, 2 manifests, the index.
		blobs, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
		if err != nil {
			t.Fatal(err)
		}
		if len(blobs) != 8 {
			t.Errorf("%d blobs, want 8", len(blobs))
		}
	})
	t.Run("stream", func(t *testing.T) {
		var buf bytes.Buffer
		if err := (ocilayout.Config{Names: names}).WriteIndexTo(t.Context(), mp, &buf); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(t.TempDir(), "layout.tar")
		if err := os.WriteFile(dest, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		checkIndexLayout(t, untar(t, dest), mp, digests, []string{"v1", "v2"})
	})
}

// TestSkopeoIndex: skopeo picks each platform's image out of the layout.
func TestSkopeoIndex(t *testing.T) {
	requireTool(t, "skopeo")
	cs := testutil.ContentStore(t)
	mp, digests := multiPlatform(t, cs)
	dest := filepath.Join(t.TempDir(), "layout")
	if err := (ocilayout.Config{Dest: dest, Names: []string{"app:v1"}}).ExportIndex(t.Context(), mp); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := mp.Digest()
	for arch := range digests {
		out, err := exec.CommandContext(t.Context(), "skopeo", "--override-os", "linux", "--override-arch", arch, "inspect", "oci:"+dest+":v1").CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo inspect (%s): %v\n%s", arch, err, out)
		}
		var info struct{ Digest, Architecture string }
		if err := json.Unmarshal(out, &info); err != nil {
			t.Fatal(err)
		}
		// skopeo reports the digest of what the tag names (the index) and the
		// config of the platform's image.
		if info.Digest != idxDigest.String() || info.Architecture != arch {
			t.Errorf("skopeo (%s) sees %s %s, want %s %s", arch, info.Architecture, info.Digest, arch, idxDigest)
		}
	}
}
