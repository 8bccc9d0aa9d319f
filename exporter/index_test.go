package exporter_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
	"github.com/builderdev/builder/exporter"
	"github.com/builderdev/builder/exporter/exportertest"
	"github.com/builderdev/builder/internal/testutil"
)

// platformImages makes an amd64 and an arm64 image that share their first layer.
func platformImages(t *testing.T, cs *content.Store, opts ...exporter.ImageOption) []exporter.PlatformImage {
	t.Helper()
	shared := exportertest.Layer(t, cs, map[string]string{"etc/os-release": "ID=test\n"})
	var out []exporter.PlatformImage
	for _, arch := range []string{"amd64", "arm64"} {
		layers := []cache.Layer{shared, exportertest.Layer(t, cs, map[string]string{"arch": arch + "\n"})}
		cfg := strings.Replace(string(exportertest.Config(t, len(layers))), `"architecture":"amd64"`, `"architecture":"`+arch+`"`, 1)
		img, err := exporter.Image(context.Background(), cs, layers, []byte(cfg), opts...)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, exporter.PlatformImage{Platform: v1.Platform{OS: "linux", Architecture: arch}, Image: img})
	}
	return out
}

func TestIndex(t *testing.T) {
	cs := testutil.ContentStore(t)
	tests := []struct {
		name      string
		imageOpts []exporter.ImageOption
		indexOpts []exporter.ImageOption
		mediaType types.MediaType
		annotated map[string]string
	}{
		{name: "oci", mediaType: types.OCIImageIndex},
		{name: "oci annotated", indexOpts: []exporter.ImageOption{exporter.WithManifestAnnotations(map[string]string{"org.example": "x"})},
			mediaType: types.OCIImageIndex, annotated: map[string]string{"org.example": "x"}},
		{name: "docker", imageOpts: []exporter.ImageOption{exporter.WithDockerMediaTypes()}, indexOpts: []exporter.ImageOption{exporter.WithDockerMediaTypes()},
			mediaType: types.DockerManifestList},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			images := platformImages(t, cs, tc.imageOpts...)
			idx, err := exporter.Index(images, tc.indexOpts...)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Index(idx); err != nil {
				t.Fatalf("validate.Index: %v", err)
			}
			m, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.MediaType != tc.mediaType {
				t.Errorf("index media type %s, want %s", m.MediaType, tc.mediaType)
			}
			if diff := cmp.Diff(tc.annotated, m.Annotations); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
			if len(m.Manifests) != len(images) {
				t.Fatalf("%d manifests, want %d", len(m.Manifests), len(images))
			}
			for i, d := range m.Manifests {
				want := images[i]
				wd, _ := want.Image.Digest()
				wmt, _ := want.Image.MediaType()
				if d.Digest != wd || d.MediaType != wmt {
					t.Errorf("manifest %d = %s %s, want %s %s", i, d.Digest, d.MediaType, wd, wmt)
				}
				if d.Platform == nil || d.Platform.String() != want.Platform.String() {
					t.Errorf("manifest %d platform = %v, want %s", i, d.Platform, want.Platform.String())
				}
				img, err := idx.Image(d.Digest)
				if err != nil {
					t.Fatal(err)
				}
				cf, err := img.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				if cf.Architecture != want.Platform.Architecture {
					t.Errorf("image %d config architecture %s, want %s", i, cf.Architecture, want.Platform.Architecture)
				}
			}
		})
	}
}

func TestIndexErrors(t *testing.T) {
	cs := testutil.ContentStore(t)
	images := platformImages(t, cs)
	tests := []struct {
		name   string
		images []exporter.PlatformImage
		opts   []exporter.ImageOption
		want   string
	}{
		{name: "empty", want: "at least one image"},
		{name: "duplicate platform", images: []exporter.PlatformImage{images[0], images[0]}, want: "two images for linux/amd64"},
		{name: "no platform", images: []exporter.PlatformImage{{Image: images[0].Image}}, want: "os and architecture are required"},
		{name: "docker list of OCI manifests", images: images, opts: []exporter.ImageOption{exporter.WithDockerMediaTypes()}, want: "a Docker manifest list holds Docker manifests"},
		{name: "docker with annotations", images: images, opts: []exporter.ImageOption{exporter.WithDockerMediaTypes(), exporter.WithManifestAnnotations(map[string]string{"a": "b"})}, want: "oci-mediatypes=false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := exporter.Index(tc.images, tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Index error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
