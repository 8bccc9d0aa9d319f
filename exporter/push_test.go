package exporter_test

import (
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/builderdev/builder/cache/content"
	"github.com/builderdev/builder/exporter"
	"github.com/builderdev/builder/exporter/exportertest"
	"github.com/builderdev/builder/internal/registry"

	"github.com/builderdev/builder/internal/testutil"
)

// TestPushAndPull pushes a store-backed image to an in-process registry and pulls it
// into a second, empty root: same digest, same bytes.
func TestPushAndPull(t *testing.T) {
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/built/app:v1"

	cs := testutil.ContentStore(t)
	img, _ := exportertest.Image(t, cs)
	want, _ := img.Digest()
	c, err := registry.New(cs, filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Push(t.Context(), ref, img); err != nil {
		t.Fatal(err)
	}
	// Pushing again finds every blob present and still succeeds.
	if err := c.Push(t.Context(), ref, img); err != nil {
		t.Fatal(err)
	}

	root2 := t.TempDir()
	cs2, err := content.Open(filepath.Join(root2, "content"))
	if err != nil {
		t.Fatal(err)
	}
	c2, err := registry.New(cs2, filepath.Join(root2, "state"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := c2.Resolve(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if r.ManifestDigest != want {
		t.Fatalf("pulled digest %s, pushed %s", r.ManifestDigest, want)
	}
	for _, l := range r.Manifest.Layers {
		if err := c2.FetchLayer(t.Context(), r.Ref, l); err != nil {
			t.Fatal(err)
		}
	}
	pulled, err := exporter.Stored(t.Context(), cs2, r.ManifestDigest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(pulled); err != nil {
		t.Fatalf("validate.Image(pulled): %v", err)
	}
	if d, _ := pulled.Digest(); d != want {
		t.Errorf("pulled image digest %s, want %s", d, want)
	}
}
