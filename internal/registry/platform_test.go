package registry

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestResolvePlatform resolves one tag for several platforms with one client, as a
// multi-platform build does: each platform pins its own manifest, also when the
// second resolution is answered from the remembered tag without the network.
func TestResolvePlatform(t *testing.T) {
	srv, host := newRegistry(t, nil)
	amd, _ := random.Image(256, 1)
	arm, _ := random.Image(256, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	tag, err := name.NewTag(host + "/multi:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(tag, idx, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	c, _ := newClient(t, t.TempDir())
	want := map[string]v1.Hash{"amd64": mustDigest(t, amd), "arm64": mustDigest(t, arm)}
	for _, arch := range []string{"amd64", "arm64"} {
		r, err := c.ResolvePlatform(t.Context(), host+"/multi:v1", v1.Platform{OS: "linux", Architecture: arch})
		if err != nil {
			t.Fatalf("ResolvePlatform(%s): %v", arch, err)
		}
		if r.ManifestDigest != want[arch] || !strings.HasSuffix(r.Ref, "@"+want[arch].String()) {
			t.Errorf("ResolvePlatform(%s) = %s %s, want %s", arch, r.Ref, r.ManifestDigest, want[arch])
		}
	}
	// Both platforms' manifests and configs are stored: with the registry gone, the
	// remembered tag answers for each.
	srv.Close()
	for _, arch := range []string{"arm64", "amd64"} {
		r, err := c.ResolvePlatform(t.Context(), host+"/multi:v1", v1.Platform{OS: "linux", Architecture: arch})
		if err != nil {
			t.Fatalf("ResolvePlatform(%s) offline: %v", arch, err)
		}
		if r.ManifestDigest != want[arch] {
			t.Errorf("ResolvePlatform(%s) offline = %s, want %s", arch, r.ManifestDigest, want[arch])
		}
	}
	if _, err := c.ResolvePlatform(t.Context(), host+"/multi:v1", v1.Platform{OS: "linux"}); err == nil || !strings.Contains(err.Error(), "os and architecture are required") {
		t.Errorf("ResolvePlatform without architecture = %v", err)
	}
}

func TestResolveOCILayoutPlatform(t *testing.T) {
	amd, _ := random.Image(128, 1)
	arm, _ := random.Image(128, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: "v1"})); err != nil {
		t.Fatal(err)
	}
	for arch, img := range map[string]v1.Image{"amd64": amd, "arm64": arm} {
		pinned, _, err := ResolveOCILayoutPlatform(t.Context(), OCILayoutScheme+dir+":v1", v1.Platform{OS: "linux", Architecture: arch})
		if err != nil {
			t.Fatalf("ResolveOCILayoutPlatform(%s): %v", arch, err)
		}
		if want := OCILayoutScheme + dir + "@" + mustDigest(t, img).String(); pinned != want {
			t.Errorf("ResolveOCILayoutPlatform(%s) = %s, want %s", arch, pinned, want)
		}
	}
}
