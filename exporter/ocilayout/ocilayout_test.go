package ocilayout_test

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
	"github.com/builderdev/builder/exporter"
	"github.com/builderdev/builder/exporter/exportertest"
	"github.com/builderdev/builder/exporter/ocilayout"

	"github.com/builderdev/builder/internal/testutil"
)

func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed", name)
	}
}

// checkLayout reads the layout at dir back and checks it holds img under the wanted
// ref.name annotations.
func checkLayout(t *testing.T, dir string, img v1.Image, wantRefNames, wantFullNames []string) {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	var refNames, fullNames []string
	for _, d := range im.Manifests {
		if d.Digest != want {
			t.Errorf("index entry %s, want %s", d.Digest, want)
		}
		if d.Platform == nil || d.Platform.OS != "linux" || d.Platform.Architecture != "amd64" {
			t.Errorf("index entry platform = %v, want linux/amd64", d.Platform)
		}
		refNames = append(refNames, d.Annotations["org.opencontainers.image.ref.name"])
		fullNames = append(fullNames, d.Annotations["io.containerd.image.name"])
	}
	if diff := cmp.Diff(wantRefNames, refNames); diff != "" {
		t.Errorf("ref.name annotations (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantFullNames, fullNames); diff != "" {
		t.Errorf("image.name annotations (-want +got):\n%s", diff)
	}
	got, err := p.Image(want)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(got); err != nil {
		t.Fatalf("validate.Image: %v", err)
	}
}

// untar extracts the tar at src into a new directory.
func untar(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			dt, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(target, dt, 0o644); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unexpected tar entry %s type %c", hdr.Name, hdr.Typeflag)
		}
	}
}

func TestWriteDirAndTar(t *testing.T) {
	cs := testutil.ContentStore(t)
	img, _ := exportertest.Image(t, cs)
	names := []string{"helloworld:v1", "127.0.0.1:5000/app", "helloworld:v1"}
	wantRef := []string{"v1", "latest"}
	wantFull := []string{"docker.io/library/helloworld:v1", "127.0.0.1:5000/app:latest"}

	t.Run("dir", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "layout")
		if err := (ocilayout.Config{Dest: dest, Names: names}).Export(t.Context(), img); err != nil {
			t.Fatal(err)
		}
		checkLayout(t, dest, img, wantRef, wantFull)
		exportertest.DirHolds(t, filepath.Dir(dest), "layout")
	})
	t.Run("tar", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "layout.tar")
		if err := (ocilayout.Config{Dest: dest, Names: names, Tar: true}).Export(t.Context(), img); err != nil {
			t.Fatal(err)
		}
		checkLayout(t, untar(t, dest), img, wantRef, wantFull)
		exportertest.DirHolds(t, filepath.Dir(dest), "layout.tar")
	})
	t.Run("unnamed", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "layout")
		if err := ocilayout.Write(t.Context(), img, nil, dest, false); err != nil {
			t.Fatal(err)
		}
		checkLayout(t, dest, img, []string{""}, []string{""})
	})
}

func TestSkopeo(t *testing.T) {
	requireTool(t, "skopeo")
	cs := testutil.ContentStore(t)
	img, _ := exportertest.Image(t, cs)
	want, _ := img.Digest()
	dir := t.TempDir()
	dirDest := filepath.Join(dir, "layout")
	tarDest := filepath.Join(dir, "layout.tar")
	if err := ocilayout.Write(t.Context(), img, []string{"helloworld:v1"}, dirDest, false); err != nil {
		t.Fatal(err)
	}
	if err := ocilayout.Write(t.Context(), img, []string{"helloworld:v1"}, tarDest, true); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"oci:" + dirDest + ":v1", "oci-archive:" + tarDest + ":v1"} {
		t.Run(ref, func(t *testing.T) {
			out, err := exec.CommandContext(t.Context(), "skopeo", "inspect", ref).CombinedOutput()
			if err != nil {
				t.Fatalf("skopeo inspect %s: %v\n%s", ref, err, out)
			}
			var info struct{ Digest string }
			if err := json.Unmarshal(out, &info); err != nil {
				t.Fatal(err)
			}
			if info.Digest != want.String() {
				t.Errorf("skopeo sees digest %s, want %s", info.Digest, want)
			}
		})
	}
	if out, err := exec.CommandContext(t.Context(), "skopeo", "inspect", "oci:"+dirDest+":nope").CombinedOutput(); err == nil {
		t.Errorf("skopeo found a tag that was not written:\n%s", out)
	}
}

func TestUmociUnpack(t *testing.T) {
	testutil.RequiresRoot(t)
	requireTool(t, "umoci")
	cs := testutil.ContentStore(t)
	img, _ := exportertest.Image(t, cs)
	dest := filepath.Join(t.TempDir(), "layout")
	if err := ocilayout.Write(t.Context(), img, []string{"helloworld:v1"}, dest, false); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, err := exec.CommandContext(t.Context(), "umoci", "unpack", "--image", dest+":v1", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	for file, want := range map[string]string{"hello.txt": "hello, world\n", "etc/os-release": "ID=test\n"} {
		got, err := os.ReadFile(filepath.Join(bundle, "rootfs", file))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
}

func TestReplaceDir(t *testing.T) {
	cs := testutil.ContentStore(t)
	img1, _ := exportertest.Image(t, cs)
	img2, err := exportertestImage2(t, cs)
	if err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	dest := filepath.Join(parent, "layout")

	// Over an existing layout: replaced, old blobs gone.
	if err := ocilayout.Write(t.Context(), img1, []string{"a:v1"}, dest, false); err != nil {
		t.Fatal(err)
	}
	if err := ocilayout.Write(t.Context(), img2, []string{"b:v2"}, dest, false); err != nil {
		t.Fatal(err)
	}
	checkLayout(t, dest, img2, []string{"v2"}, []string{"docker.io/library/b:v2"})
	d1, _ := img1.Digest()
	if _, err := os.Stat(filepath.Join(dest, "blobs", d1.Algorithm, d1.Hex)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old manifest blob still there: %v", err)
	}
	exportertest.DirHolds(t, parent, "layout")

	// Over an empty directory: fine.
	empty := filepath.Join(parent, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ocilayout.Write(t.Context(), img1, []string{"a:v1"}, empty, false); err != nil {
		t.Fatal(err)
	}
	checkLayout(t, empty, img1, []string{"v1"}, []string{"docker.io/library/a:v1"})

	// Over anything else: refused, untouched.
	other := filepath.Join(parent, "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "precious"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(parent, "file")
	if err := os.WriteFile(file, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dest := range []string{other, file} {
		err := ocilayout.Write(t.Context(), img1, []string{"a:v1"}, dest, false)
		if err == nil || !strings.Contains(err.Error(), dest) {
			t.Errorf("Write over %s = %v, want an error naming it", dest, err)
		}
	}
	if dt, err := os.ReadFile(filepath.Join(other, "precious")); err != nil || string(dt) != "keep" {
		t.Errorf("refused directory changed: %q, %v", dt, err)
	}
	exportertest.DirHolds(t, parent, "empty", "file", "layout", "other")
}

func TestFailureLeavesNothing(t *testing.T) {
	cs := testutil.ContentStore(t)
	img, layers := exportertest.Image(t, cs)
	if err := os.Remove(cs.Path(layers[0].Digest)); err != nil {
		t.Fatal(err)
	}
	for _, asTar := range []bool{false, true} {
		parent := t.TempDir()
		dest := filepath.Join(parent, "out")
		err := ocilayout.Write(t.Context(), img, []string{"x"}, dest, asTar)
		if err == nil || !strings.Contains(err.Error(), "blob not found") || !strings.Contains(err.Error(), dest) {
			t.Errorf("Write(tar=%v) = %v, want a missing-blob error naming %s", asTar, err, dest)
		}
		exportertest.DirHolds(t, parent)
	}
	parent := t.TempDir()
	if err := ocilayout.Write(t.Context(), img, []string{"x@sha256:" + strings.Repeat("a", 64)}, filepath.Join(parent, "o"), false); err == nil {
		t.Error("Write with a digest name succeeded")
	}
	exportertest.DirHolds(t, parent)
}

func exportertestImage2(t *testing.T, cs *content.Store) (v1.Image, error) {
	t.Helper()
	l := exportertest.Layer(t, cs, map[string]string{"two": "2"})
	return exporter.Image(t.Context(), cs, []cache.Layer{l}, exportertest.Config(t, 1))
}

// TestDescriptorAnnotations: index.json entries carry the given annotations, the
// names and the config's creation time.
func TestDescriptorAnnotations(t *testing.T) {
	cs := testutil.ContentStore(t)
	img, _ := exportertest.Image(t, cs)
	dest := filepath.Join(t.TempDir(), "layout")
	c := ocilayout.Config{Dest: dest, Names: []string{"app:1"}, Annotations: map[string]string{"com.example.k": "v"}}
	if err := c.Export(t.Context(), img); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(dest)
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := p.ImageIndex()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"com.example.k":                     "v",
		"org.opencontainers.image.created":  "2024-01-02T03:04:05Z",
		"org.opencontainers.image.ref.name": "1",
		"io.containerd.image.name":          "docker.io/library/app:1",
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index has %d entries", len(im.Manifests))
	}
	if d := cmp.Diff(want, im.Manifests[0].Annotations); d != "" {
		t.Errorf("annotations (-want +got):\n%s", d)
	}
}

// TestWriteToStream: the streamed layout tar is the tar file's bytes.
func TestWriteToStream(t *testing.T) {
	cs := testutil.ContentStore(t)
	img, _ := exportertest.Image(t, cs)
	dest := filepath.Join(t.TempDir(), "layout.tar")
	c := ocilayout.Config{Dest: dest, Names: []string{"app:1"}, Tar: true}
	if err := c.Export(t.Context(), img); err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	if err := c.WriteTo(t.Context(), img, &buf); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	if buf.String() != string(file) {
		t.Errorf("streamed layout tar differs from the file")
	}
}
