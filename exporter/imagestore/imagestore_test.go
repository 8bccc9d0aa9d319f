package imagestore_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
	"github.com/builderdev/builder/exporter"
	"github.com/builderdev/builder/exporter/exportertest"
	"github.com/builderdev/builder/exporter/imagestore"
)

func open(t *testing.T, root string) (*imagestore.Store, *content.Store) {
	t.Helper()
	cs, err := content.Open(filepath.Join(root, "content"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := imagestore.Open(filepath.Join(root, "images"), cs)
	if err != nil {
		t.Fatal(err)
	}
	return s, cs
}

func digestOf(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestPutGetList(t *testing.T) {
	root := t.TempDir()
	s, cs := open(t, root)
	img, layers := exportertest.Image(t, cs)
	want := digestOf(t, img)

	got, err := s.Put(t.Context(), "helloworld", img)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("Put = %s, want %s", got, want)
	}
	if err := (imagestore.Config{Store: s, Names: []string{"127.0.0.1:5000/app:v1"}}).Export(t.Context(), img); err != nil {
		t.Fatal(err)
	}

	// A second Store on the same root sees what the first wrote.
	s2, _ := open(t, root)
	for _, name := range []string{"helloworld", "helloworld:latest", "docker.io/library/helloworld:latest", "127.0.0.1:5000/app:v1"} {
		img, err := s2.Get(t.Context(), name)
		if err != nil {
			t.Fatalf("Get(%s): %v", name, err)
		}
		if err := validate.Image(img); err != nil {
			t.Errorf("validate.Image(%s): %v", name, err)
		}
		if d := digestOf(t, img); d != want {
			t.Errorf("Get(%s) digest = %s, want %s", name, d, want)
		}
	}

	recs, err := s2.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cfgName, _ := img.ConfigName()
	rawCfg, _ := img.RawConfigFile()
	size := int64(len(rawCfg))
	for _, l := range layers {
		size += l.Size
	}
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	wantRecs := []imagestore.Record{
		{Name: "127.0.0.1:5000/app:v1", ManifestDigest: want, ConfigDigest: cfgName, Created: created, Size: size},
		{Name: "docker.io/library/helloworld:latest", ManifestDigest: want, ConfigDigest: cfgName, Created: created, Size: size},
	}
	if diff := cmp.Diff(wantRecs, recs); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}

func TestPutOverwritesTag(t *testing.T) {
	s, cs := open(t, t.TempDir())
	img1, _ := exportertest.Image(t, cs)
	l := exportertest.Layer(t, cs, map[string]string{"v2": "2"})
	img2, err := exporter.Image(t.Context(), cs, []cache.Layer{l}, exportertest.Config(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(t.Context(), "app:v1", img1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(t.Context(), "app:v1", img2); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(t.Context(), "app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if d, want := digestOf(t, got), digestOf(t, img2); d != want {
		t.Errorf("Get after overwrite = %s, want %s", d, want)
	}
	recs, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The image that lost its name stays, untagged, as with Docker.
	if len(recs) != 2 || recs[0].ManifestDigest != digestOf(t, img2) || recs[0].Name != "docker.io/library/app:v1" ||
		recs[1].ManifestDigest != digestOf(t, img1) || recs[1].Name != "" {
		t.Errorf("List = %+v, want the new image named and the old one untagged", recs)
	}
}

func TestPutForeignImage(t *testing.T) {
	// An image whose layers are not in the content store yet is copied in.
	s, _ := open(t, t.TempDir())
	img, err := random.Image(300, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(t.Context(), "random", img); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(t.Context(), "random")
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(got); err != nil {
		t.Fatalf("validate.Image: %v", err)
	}
	if d, want := digestOf(t, got), digestOf(t, img); d != want {
		t.Errorf("digest = %s, want %s", d, want)
	}
}

func TestErrors(t *testing.T) {
	s, cs := open(t, t.TempDir())
	if _, err := s.Get(t.Context(), "nothing"); !errors.Is(err, imagestore.ErrNotFound) || !strings.Contains(err.Error(), "docker.io/library/nothing:latest") {
		t.Errorf("Get(unknown) = %v, want ErrNotFound naming the image", err)
	}
	img, layers := exportertest.Image(t, cs)
	if _, err := s.Put(t.Context(), "x@sha256:"+strings.Repeat("a", 64), img); err == nil {
		t.Error("Put with a digest name succeeded")
	}
	if _, err := s.Put(t.Context(), "Bad Name", img); err == nil {
		t.Error("Put with an invalid name succeeded")
	}
	recs, err := s.List(t.Context())
	if err != nil || len(recs) != 0 {
		t.Errorf("List after failed Puts = %v, %v; want empty", recs, err)
	}

	// A stored image whose layer blob vanished: Get works (lazy), reading fails.
	if _, err := s.Put(t.Context(), "x", img); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(cs.Path(layers[0].Digest)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(t.Context(), "x")
	if err != nil {
		t.Fatal(err)
	}
	ls, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ls[0].Compressed(); err == nil || !strings.Contains(err.Error(), "blob not found") {
		t.Errorf("reading a vanished layer = %v, want blob not found", err)
	}
}
