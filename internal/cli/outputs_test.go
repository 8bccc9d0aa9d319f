package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/builderdev/builder/exporter"
	"github.com/builderdev/builder/exporter/exportertest"
	"github.com/builderdev/builder/frontend/dockerfile"
	"github.com/builderdev/builder/solver"
)

func TestParseOutput(t *testing.T) {
	t.Parallel()
	lvl := func(n int) *int { return &n }
	no, yes := false, true
	for _, tc := range []struct {
		name, spec string
		want       Output
		err        string
	}{
		{"docker", "type=docker,dest=out.tar", Output{Type: "docker", Dest: "out.tar", Tar: true}, ""},
		{"docker stdout", "type=docker,dest=-", Output{Type: "docker", Dest: "-", Tar: true}, ""},
		{"oci dir", "type=oci,dest=layout,tar=false", Output{Type: "oci", Dest: "layout", Tar: false}, ""},
		{"oci stdout", "type=oci,dest=-", Output{Type: "oci", Dest: "-", Tar: true}, ""},
		{"oci dir to stdout", "type=oci,dest=-,tar=false", Output{}, "standard output"},
		{"image push", "type=image,name=127.0.0.1:5000/a:1,push=true", Output{Type: "image", Names: []string{"127.0.0.1:5000/a:1"}, Push: true, Tar: true}, ""},
		{"several names", `type=image,"name=a:1,b:2"`, Output{Type: "image", Names: []string{"a:1", "b:2"}, Tar: true}, ""},
		{"registry alias", "type=registry,name=r/a", Output{Type: "image", Names: []string{"r/a"}, Push: true, Tar: true}, ""},
		{"registry insecure", "type=registry,name=r/a,registry.insecure=true", Output{Type: "image", Names: []string{"r/a"}, Push: true, Insecure: true, Tar: true}, ""},
		{"local", "type=local,dest=out", Output{Type: "local", Dest: "out", Tar: true}, ""},
		{"tar", "type=tar,dest=fs.tar", Output{Type: "tar", Dest: "fs.tar", Tar: true}, ""},
		{"tar stdout", "type=tar,dest=-", Output{Type: "tar", Dest: "-", Tar: true}, ""},
		{"bare dir is local", "out", Output{Type: "local", Dest: "out", Tar: true}, ""},
		{"bare dash is tar", "-", Output{Type: "tar", Dest: "-", Tar: true}, ""},
		{"local to stdout", "type=local,dest=-", Output{}, "standard output"},
		{"zstd", "type=oci,dest=x,compression=zstd,compression-level=19,force-compression=true",
			Output{Type: "oci", Dest: "x", Tar: true, Compression: exporter.Compress{Type: exporter.Zstd, Level: lvl(19), Force: true}}, ""},
		{"uncompressed docker", "type=docker,dest=x,compression=uncompressed,oci-mediatypes=true",
			Output{Type: "docker", Dest: "x", Tar: true, Compression: exporter.Compress{Type: exporter.Uncompressed}, OCIMediaTypes: &yes}, ""},
		{"gzip level", "type=image,name=a,compression=gzip,compression-level=9",
			Output{Type: "image", Names: []string{"a"}, Tar: true, Compression: exporter.Compress{Type: exporter.Gzip, Level: lvl(9)}}, ""},
		{"docker types", "type=oci,dest=x,oci-mediatypes=false", Output{Type: "oci", Dest: "x", Tar: true, OCIMediaTypes: &no}, ""},
		{"annotations", "type=oci,dest=x,annotation.org.opencontainers.image.title=App,annotation-manifest.a=1,annotation-manifest-descriptor.b=2",
			Output{Type: "oci", Dest: "x", Tar: true,
				Annotations:           map[string]string{"org.opencontainers.image.title": "App", "a": "1"},
				DescriptorAnnotations: map[string]string{"b": "2"}}, ""},
		{"annotation with comma", `type=image,name=a,"annotation.k=x,y"`, Output{Type: "image", Names: []string{"a"}, Tar: true, Annotations: map[string]string{"k": "x,y"}}, ""},
		{"annotation docker types", "type=docker,dest=x,annotation.a=1", Output{}, "oci-mediatypes=false"},
		{"annotation docker types oci", "type=docker,dest=x,oci-mediatypes=true,annotation.a=1",
			Output{Type: "docker", Dest: "x", Tar: true, OCIMediaTypes: &yes, Annotations: map[string]string{"a": "1"}}, ""},
		{"descriptor annotation on image", "type=image,name=a,annotation-manifest-descriptor.a=1", Output{}, "type=oci only"},
		{"rewrite-timestamp accepted", "type=image,name=a,rewrite-timestamp=true", Output{Type: "image", Names: []string{"a"}, Tar: true}, ""},
		{"index annotations", "type=oci,dest=x,annotation-index.a=1,annotation-index-descriptor.b=2",
			Output{Type: "oci", Dest: "x", Tar: true, IndexAnnotations: map[string]string{"a": "1"}, IndexDescriptorAnnotations: map[string]string{"b": "2"}}, ""},
		{"index descriptor annotation on image", "type=image,name=a,annotation-index-descriptor.b=2", Output{}, "type=oci only"},
		{"index annotation with platform", "type=oci,dest=x,annotation-index[linux/arm64].a=1", Output{}, "applies to every platform"},
		{"platform annotations", "type=oci,dest=x,annotation[linux/aarch64].a=1,annotation-manifest[linux/amd64].b=2",
			Output{Type: "oci", Dest: "x", Tar: true, PlatformAnnotations: map[string]map[string]string{"linux/arm64": {"a": "1"}, "linux/amd64": {"b": "2"}}}, ""},
		{"bad annotation platform", "type=oci,dest=x,annotation[linux/].a=1", Output{}, "want os/arch"},
		{"bad annotation type", "type=oci,dest=x,annotation-bogus.a=1", Output{}, "unknown annotation type"},
		{"zstd docker types", "type=docker,dest=x,compression=zstd,oci-mediatypes=false", Output{}, "conflicts"},
		{"bad compression", "type=oci,dest=x,compression=lz4", Output{}, "unknown compression"},
		{"bad level", "type=oci,dest=x,compression=gzip,compression-level=12", Output{}, "out of range"},
		{"bad zstd level", "type=oci,dest=x,compression=zstd,compression-level=0", Output{}, "out of range"},
		{"level not int", "type=oci,dest=x,compression-level=high", Output{}, "not an integer"},
		{"no dest", "type=docker", Output{}, "needs dest"},
		{"no dest local", "type=local", Output{}, "needs dest"},
		{"no type", "dest=x", Output{}, "missing type"},
		{"bad type", "type=ftp,dest=x", Output{}, "unknown type"},
		{"bad bool", "type=image,name=a,push=maybe", Output{}, "push="},
		{"unknown attr", "type=docker,dest=x,colour=red", Output{}, `unknown attribute "colour"`},
		{"attr of other type", "type=local,dest=x,compression=zstd", Output{}, `unknown attribute "compression" for type=local`},
		{"dest on image", "type=image,name=a,dest=x", Output{}, `unknown attribute "dest"`},
		{"tar on docker", "type=docker,dest=x,tar=false", Output{}, `unknown attribute "tar"`},
		{"not key value", "type=oci,out", Output{}, "not key=value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseOutput(tc.spec)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseOutput(%q) error = %v, want containing %q", tc.spec, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("parseOutput(%q) (-want +got):\n%s", tc.spec, d)
			}
		})
	}
}

func FuzzParseOutput(f *testing.F) {
	for _, s := range []string{"type=docker,dest=a", `type=image,"name=a,b",push=true`, "type=oci,dest=x,tar=false"} {
		f.Add(s)
	}
	f.Add("type=oci,dest=x,compression=zstd,compression-level=3,annotation.a=b")
	f.Add("out")
	f.Fuzz(func(t *testing.T, s string) {
		o, err := parseOutput(s)
		if err != nil {
			return
		}
		if _, ok := attrsByType[o.Type]; !ok {
			t.Fatalf("accepted %q with type %q", s, o.Type)
		}
		if o.Type != "image" && o.Dest == "" {
			t.Fatalf("accepted %q without a destination", s)
		}
		if err := o.Compression.Validate(); err != nil {
			t.Fatalf("accepted %q with an invalid compression: %v", s, err)
		}
	})
}

func TestParseOutputsOneStdout(t *testing.T) {
	t.Parallel()
	if _, err := parseOutputs([]string{"type=docker,dest=-", "type=tar,dest=-"}); err == nil || !strings.Contains(err.Error(), "only one") {
		t.Fatalf("two outputs to standard output: error = %v", err)
	}
	outs, err := parseOutputs([]string{"type=docker,dest=-", "type=tar,dest=x"})
	if err != nil || len(outs) != 2 {
		t.Fatalf("parseOutputs = %v, %v", outs, err)
	}
}

func TestOCITypes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		spec string
		want bool
	}{
		{"type=docker,dest=x", false},
		{"type=docker,dest=x,compression=zstd", true},
		{"type=docker,dest=x,oci-mediatypes=true", true},
		{"type=oci,dest=x", true},
		{"type=oci,dest=x,oci-mediatypes=false", false},
		{"type=image,name=a", true},
	} {
		o, err := parseOutput(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := o.ociTypes(); got != tc.want {
			t.Errorf("%s: OCI media types = %v, want %v", tc.spec, got, tc.want)
		}
	}
}

func TestWriteMetadata(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	md := metadata{
		manifestDigest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)},
		configDigest:   v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("b", 64)},
		mediaType:      types.OCIManifestSchema1,
		size:           123,
		names:          []string{"docker.io/library/a:latest", "r/b:1"},
		image:          true,
	}
	mf, iid := filepath.Join(dir, "md.json"), filepath.Join(dir, "iid")
	if err := writeMetadata(mf, iid, md); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	dt, _ := os.ReadFile(mf)
	if err := json.Unmarshal(dt, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"containerimage.digest":        md.manifestDigest.String(),
		"containerimage.config.digest": md.configDigest.String(),
		"image.name":                   "docker.io/library/a:latest,r/b:1",
		"containerimage.descriptor": map[string]any{
			"mediaType": string(types.OCIManifestSchema1), "digest": md.manifestDigest.String(), "size": float64(123),
		},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("metadata file (-want +got):\n%s", d)
	}
	if dt, _ := os.ReadFile(iid); string(dt) != md.configDigest.String() {
		t.Errorf("iidfile = %q, want %q", dt, md.configDigest)
	}
	exportertest.DirHolds(t, dir, "iid", "md.json")
}

// TestImageConfigEpoch: with SOURCE_DATE_EPOCH the image and this build's history
// entries are created at the epoch; inherited entries keep earlier times and are
// clamped when later.
func TestImageConfigEpoch(t *testing.T) {
	t.Parallel()
	epoch := time.Unix(1700000000, 0).UTC()
	old := epoch.Add(-time.Hour)
	future := epoch.Add(time.Hour)
	step := digest.FromString("run")
	fe := &dockerfile.Result{
		Image: ocispec.Image{History: []ocispec.History{
			{Created: &old, CreatedBy: "base, older"},
			{Created: &future, CreatedBy: "base, newer"},
			{CreatedBy: "ENV"},
			{CreatedBy: "RUN"},
		}},
		History:         []digest.Digest{"", "", "", step},
		SourceDateEpoch: &epoch,
	}
	results := map[digest.Digest]solver.Result{step: {Created: future.Add(time.Hour)}}
	dt, err := imageConfig(fe, nil, results)
	if err != nil {
		t.Fatal(err)
	}
	var got ocispec.Image
	if err := json.Unmarshal(dt, &got); err != nil {
		t.Fatal(err)
	}
	if !got.Created.Equal(epoch) {
		t.Errorf("created = %s, want the epoch", got.Created)
	}
	want := []time.Time{old, epoch, epoch, epoch}
	for i, h := range got.History {
		if !h.Created.Equal(want[i]) {
			t.Errorf("history[%d] (%s) created %s, want %s", i, h.CreatedBy, h.Created, want[i])
		}
	}
}
