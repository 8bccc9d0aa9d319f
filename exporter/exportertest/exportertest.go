// Package exportertest makes small real layers and images in a content store for the
// exporter tests: gzip tar blobs written the way the differ writes them.
package exportertest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
	"github.com/builderdev/builder/exporter"
)

// Layer writes a gzip tar holding files (path → content, sorted) into cs and returns
// its description. Parent directories are not added; tar readers do not need them.
func Layer(t testing.TB, cs *content.Store, files map[string]string) cache.Layer {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, n := range names {
		hdr := &tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gzBuf bytes.Buffer
	zw := gzip.NewWriter(&gzBuf)
	if _, err := zw.Write(tarBuf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := cs.WriteBytes(context.Background(), gzBuf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return cache.Layer{
		DiffID:    digest.FromBytes(tarBuf.Bytes()),
		Digest:    d,
		Size:      int64(gzBuf.Len()),
		MediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
	}
}

// Config is a minimal OCI image config for linux/amd64 with one history entry per
// layer and a field go-containerregistry does not model, to check it survives.
func Config(t testing.TB, layers int) []byte {
	t.Helper()
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	hist := make([]v1.History, layers)
	for i := range hist {
		hist[i] = v1.History{Created: v1.Time{Time: created}, CreatedBy: "exportertest"}
	}
	dt, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      created,
		"config":       map[string]any{"Cmd": []string{"/bin/sh"}, "Env": []string{"PATH=/bin"}},
		"history":      hist,
		"x-builder":    "kept",
	})
	if err != nil {
		t.Fatal(err)
	}
	return dt
}

// Image makes a two-layer image in cs (the second layer overrides a file of the first).
func Image(t testing.TB, cs *content.Store) (v1.Image, []cache.Layer) {
	t.Helper()
	layers := []cache.Layer{
		Layer(t, cs, map[string]string{"etc/os-release": "ID=test\n", "hello.txt": "hello\n"}),
		Layer(t, cs, map[string]string{"hello.txt": "hello, world\n"}),
	}
	img, err := exporter.Image(context.Background(), cs, layers, Config(t, len(layers)))
	if err != nil {
		t.Fatal(err)
	}
	return img, layers
}

// DirHolds fails the test unless dir holds exactly the entries want (sorted): sinks
// must leave no temporary or partial file behind.
func DirHolds(t testing.TB, dir string, want ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries of %s (-want +got):\n%s", dir, diff)
	}
}
