package dockertar_test

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/builderdev/builder/exporter/dockertar"
	"github.com/builderdev/builder/exporter/exportertest"

	"github.com/builderdev/builder/internal/testutil"
)

// tarFiles reads the tarball at p into name → content.
func tarFiles(t *testing.T, p string) map[string][]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		dt, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[hdr.Name] = dt
	}
}

func TestWriteRoundTrip(t *testing.T) {
	cs := testutil.ContentStore(t)
	img, _ := exportertest.Image(t, cs)
	dest := filepath.Join(t.TempDir(), "img.tar")
	tags := []string{"helloworld", "127.0.0.1:5000/x/y:v1"}
	if err := (dockertar.Config{Dest: dest, Tags: tags}).Export(t.Context(), img); err != nil {
		t.Fatal(err)
	}

	wantCfg, _ := img.ConfigName()
	wantLayers, _ := img.Layers()
	for _, tg := range []string{"docker.io/library/helloworld:latest", "127.0.0.1:5000/x/y:v1"} {
		t.Run(tg, func(t *testing.T) {
			tag, err := name.NewTag(tg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tarball.ImageFromPath(dest, &tag)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Image(got); err != nil {
				t.Fatalf("validate.Image: %v", err)
			}
			if cfg, _ := got.ConfigName(); cfg != wantCfg {
				t.Errorf("config = %s, want %s", cfg, wantCfg)
			}
			ls, _ := got.Layers()
			if len(ls) != len(wantLayers) {
				t.Fatalf("%d layers, want %d", len(ls), len(wantLayers))
			}
			for i := range ls {
				a, _ := ls[i].Digest()
				b, _ := wantLayers[i].Digest()
				if a != b {
					t.Errorf("layer %d = %s, want %s", i, a, b)
				}
			}
		})
	}

	files := tarFiles(t, dest)
	var manifest tarball.Manifest
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(manifest) != 1 {
		t.Fatalf("manifest.json lists %d images, want 1", len(manifest))
	}
	wantTags := []string{"127.0.0.1:5000/x/y:v1", "docker.io/library/helloworld:latest"}
	gotTags := append([]string(nil), manifest[0].RepoTags...)
	if len(gotTags) == 2 && gotTags[0] > gotTags[1] {
		gotTags[0], gotTags[1] = gotTags[1], gotTags[0]
	}
	if diff := cmp.Diff(wantTags, gotTags); diff != "" {
		t.Errorf("RepoTags (-want +got):\n%s", diff)
	}
	var repos map[string]map[string]string
	if err := json.Unmarshal(files["repositories"], &repos); err != nil {
		t.Fatalf("repositories: %v (%q)", err, files["repositories"])
	}
	wantRepos := map[string]map[string]string{
		"docker.io/library/helloworld": {"latest": wantCfg.Hex},
		"127.0.0.1:5000/x/y":           {"v1": wantCfg.Hex},
	}
	if diff := cmp.Diff(wantRepos, repos); diff != "" {
		t.Errorf("repositories (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("dest mode = %v, %v; want 0644", fi.Mode(), err)
	}
	exportertest.DirHolds(t, filepath.Dir(dest), "img.tar")
}

func TestWriteSkopeo(t *testing.T) {
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("skopeo not installed")
	}
	cs := testutil.ContentStore(t)
	img, _ := exportertest.Image(t, cs)
	dest := filepath.Join(t.TempDir(), "img.tar")
	if err := dockertar.Write(t.Context(), img, []string{"helloworld:v2"}, dest); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), "skopeo", "inspect", "--raw", "--config", "docker-archive:"+dest).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	want, _ := img.RawConfigFile()
	if strings.TrimSpace(string(out)) != string(want) {
		t.Errorf("skopeo sees config %s, want %s", out, want)
	}
	out, err = exec.CommandContext(t.Context(), "skopeo", "inspect", "docker-archive:"+dest).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	var info struct {
		Layers []string
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	// A docker-archive source names layers by diffID.
	cf, _ := img.ConfigFile()
	var wantDiffIDs []string
	for _, d := range cf.RootFS.DiffIDs {
		wantDiffIDs = append(wantDiffIDs, d.String())
	}
	if diff := cmp.Diff(wantDiffIDs, info.Layers); diff != "" {
		t.Errorf("skopeo layers (-want +got):\n%s", diff)
	}
	// skopeo finds the image by its tag, as Docker normalises it.
	for _, ref := range []string{"docker.io/library/helloworld:v2", "helloworld:v2"} {
		if out, err := exec.CommandContext(t.Context(), "skopeo", "inspect", "docker-archive:"+dest+":"+ref).CombinedOutput(); err != nil {
			t.Errorf("skopeo inspect by tag %s: %v\n%s", ref, err, out)
		}
	}
	if out, err := exec.CommandContext(t.Context(), "skopeo", "inspect", "docker-archive:"+dest+":other:v1").CombinedOutput(); err == nil {
		t.Errorf("skopeo found a tag that was not written:\n%s", out)
	}
}

func TestWriteUntagged(t *testing.T) {
	cs := testutil.ContentStore(t)
	img, _ := exportertest.Image(t, cs)
	dest := filepath.Join(t.TempDir(), "img.tar")
	if err := dockertar.Write(t.Context(), img, nil, dest); err != nil {
		t.Fatal(err)
	}
	files := tarFiles(t, dest)
	var manifest tarball.Manifest
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest) != 1 || len(manifest[0].RepoTags) != 0 {
		t.Errorf("manifest.json = %s, want one untagged image", files["manifest.json"])
	}
	if _, ok := files["repositories"]; ok {
		t.Error("untagged tarball has a repositories file")
	}
	got, err := tarball.ImageFromPath(dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(got); err != nil {
		t.Fatal(err)
	}
}

func TestWriteFailureLeavesNothing(t *testing.T) {
	cs := testutil.ContentStore(t)
	img, layers := exportertest.Image(t, cs)
	dir := t.TempDir()

	// An existing tarball survives a failed export untouched.
	old := filepath.Join(dir, "old.tar")
	if err := os.WriteFile(old, []byte("previous"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(cs.Path(layers[1].Digest)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dest string
		tags       []string
		want       string
	}{
		{name: "missing layer", dest: filepath.Join(dir, "new.tar"), tags: []string{"x"}, want: "blob not found"},
		{name: "missing layer over old", dest: old, tags: []string{"x"}, want: "blob not found"},
		{name: "digest tag", dest: filepath.Join(dir, "d.tar"), tags: []string{"x@sha256:" + strings.Repeat("a", 64)}, want: "needs a name:tag"},
		{name: "bad tag", dest: filepath.Join(dir, "b.tar"), tags: []string{"UPPER"}, want: `"UPPER"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := dockertar.Write(t.Context(), img, tc.tags, tc.dest)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.dest) {
				t.Fatalf("Write = %v, want an error naming %s containing %q", err, tc.dest, tc.want)
			}
		})
	}
	if dt, err := os.ReadFile(old); err != nil || string(dt) != "previous" {
		t.Errorf("old tarball = %q, %v; want it untouched", dt, err)
	}
	exportertest.DirHolds(t, dir, "old.tar")
}

func TestWriteCancelled(t *testing.T) {
	cs := testutil.ContentStore(t)
	img, _ := exportertest.Image(t, cs)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := dockertar.Write(ctx, img, []string{"x"}, filepath.Join(dir, "x.tar")); err == nil {
		t.Fatal("Write with a cancelled context succeeded")
	}
	exportertest.DirHolds(t, dir)
}

// TestWriteToStream: the streamed tarball (no seeking: a pipe) is byte for byte the
// file one, repositories included.
func TestWriteToStream(t *testing.T) {
	cs := testutil.ContentStore(t)
	img, _ := exportertest.Image(t, cs)
	dir := t.TempDir()
	tags := []string{"app:1", "reg.example:5000/a/b:v2"}
	if err := dockertar.Write(t.Context(), img, tags, filepath.Join(dir, "file.tar")); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(dockertar.WriteTo(context.Background(), img, tags, pw)) }()
	streamed, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(filepath.Join(dir, "file.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if string(streamed) != string(file) {
		t.Fatalf("streamed tarball (%d bytes) differs from the file (%d bytes)", len(streamed), len(file))
	}
	files := tarFiles(t, filepath.Join(dir, "file.tar"))
	var repos map[string]map[string]string
	if err := json.Unmarshal(files["repositories"], &repos); err != nil {
		t.Fatalf("repositories: %v", err)
	}
	cfg, _ := img.ConfigName()
	want := map[string]map[string]string{"docker.io/library/app": {"1": cfg.Hex}, "reg.example:5000/a/b": {"v2": cfg.Hex}}
	if d := cmp.Diff(want, repos); d != "" {
		t.Errorf("repositories (-want +got):\n%s", d)
	}
}

// TestWriteToClosedPipe: a reader that goes away fails the export with an error.
func TestWriteToClosedPipe(t *testing.T) {
	cs := testutil.ContentStore(t)
	img, _ := exportertest.Image(t, cs)
	pr, pw := io.Pipe()
	pr.CloseWithError(errors.New("reader gone"))
	if err := dockertar.WriteTo(t.Context(), img, []string{"a:1"}, pw); err == nil || !strings.Contains(err.Error(), "reader gone") {
		t.Fatalf("WriteTo a closed pipe: error = %v", err)
	}
}
