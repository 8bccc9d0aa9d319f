package exporter_test

import (
	"encoding/json"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/exporter"
	"github.com/builderdev/builder/exporter/exportertest"

	"github.com/builderdev/builder/internal/testutil"
)

func TestImage(t *testing.T) {
	cs := testutil.ContentStore(t)
	img, layers := exportertest.Image(t, cs)
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate.Image: %v", err)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.RootFS.DiffIDs) != len(layers) {
		t.Fatalf("rootfs has %d diff_ids, want %d", len(cf.RootFS.DiffIDs), len(layers))
	}
	for i, l := range layers {
		if cf.RootFS.DiffIDs[i].String() != l.DiffID.String() {
			t.Errorf("diff_ids[%d] = %s, want %s", i, cf.RootFS.DiffIDs[i], l.DiffID)
		}
	}
	if cf.RootFS.Type != "layers" || len(cf.History) != 2 || cf.Config.Cmd[0] != "/bin/sh" {
		t.Errorf("config lost fields: %+v", cf)
	}
	raw, _ := img.RawConfigFile()
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	if fields["x-builder"] != "kept" {
		t.Errorf("unknown config field dropped: %s", raw)
	}

	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("manifest media types = %s, %s; want OCI", m.MediaType, m.Config.MediaType)
	}
	for i, l := range layers {
		if m.Layers[i].Digest.String() != l.Digest.String() || m.Layers[i].Size != l.Size {
			t.Errorf("manifest layer %d = %v, want %s size %d", i, m.Layers[i], l.Digest, l.Size)
		}
	}
}

func TestImageMediaTypesAndEmpty(t *testing.T) {
	cs := testutil.ContentStore(t)
	l := exportertest.Layer(t, cs, map[string]string{"a": "b"})
	l.MediaType = string(types.DockerLayer)
	l.Size = 0 // looked up from the store
	img, err := exporter.Image(t.Context(), cs, []cache.Layer{l}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate.Image: %v", err)
	}
	m, _ := img.Manifest()
	if m.Layers[0].MediaType != types.OCILayer {
		t.Errorf("layer media type = %s, want %s", m.Layers[0].MediaType, types.OCILayer)
	}
	if m.Layers[0].Size <= 0 {
		t.Errorf("layer size = %d, want the blob's size", m.Layers[0].Size)
	}

	empty, err := exporter.Image(t.Context(), cs, nil, []byte(`{"os":"linux","architecture":"amd64"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(empty); err != nil {
		t.Fatalf("validate.Image(no layers): %v", err)
	}
	raw, _ := empty.RawConfigFile()
	if !strings.Contains(string(raw), `"diff_ids":[]`) {
		t.Errorf("config of an image without layers = %s, want an empty diff_ids list", raw)
	}
}

func TestImageErrors(t *testing.T) {
	cs := testutil.ContentStore(t)
	good := exportertest.Layer(t, cs, map[string]string{"a": "b"})
	tests := []struct {
		name  string
		layer cache.Layer
		cfg   []byte
		want  string
	}{
		{name: "bad config", layer: good, cfg: []byte("{"), want: "decoding image config"},
		{name: "bad digest", layer: cache.Layer{Digest: "nope", DiffID: good.DiffID, Size: 1}, want: `layer digest "nope"`},
		{name: "missing blob of unknown size", layer: cache.Layer{Digest: digest.FromString("x"), DiffID: good.DiffID}, want: "blob not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := exporter.Image(t.Context(), cs, []cache.Layer{tc.layer}, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Image = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestStoredRoundTrip(t *testing.T) {
	cs := testutil.ContentStore(t)
	img, _ := exportertest.Image(t, cs)
	// Stored must give back the very bytes, so an image from elsewhere (Docker media
	// types, key order of its own) keeps its digest.
	img, err := mutate.Config(img, v1.Config{Cmd: []string{"/bin/true"}})
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.DockerManifestSchema2)
	img = mutate.ConfigMediaType(img, types.DockerConfigJSON)
	rawM, _ := img.RawManifest()
	rawC, _ := img.RawConfigFile()
	if _, err := cs.WriteBytes(t.Context(), rawC); err != nil {
		t.Fatal(err)
	}
	md, err := cs.WriteBytes(t.Context(), rawM)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := v1.NewHash(md.String())
	got, err := exporter.Stored(t.Context(), cs, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(got); err != nil {
		t.Fatalf("validate.Image: %v", err)
	}
	gd, _ := got.Digest()
	if gd != h {
		t.Errorf("Stored digest = %s, want %s", gd, h)
	}
	if mt, _ := got.MediaType(); mt != types.DockerManifestSchema2 {
		t.Errorf("media type = %s, want %s", mt, types.DockerManifestSchema2)
	}

	if _, err := exporter.Stored(t.Context(), cs, v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}); err == nil {
		t.Error("Stored of an unknown manifest succeeded")
	}
}
