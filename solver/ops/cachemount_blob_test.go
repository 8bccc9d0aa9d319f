package ops_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
	"github.com/builderdev/builder/cache/remotecache"
	"github.com/builderdev/builder/cache/remotecache/remotecachetest"
	"github.com/builderdev/builder/internal/testutil"
	"github.com/builderdev/builder/solver/ops"
)

// writeTree makes a cache mount's contents: files, a subdirectory, a symlink and a
// file owned by another user.
func writeTree(t *testing.T, dir string) {
	t.Helper()
	for name, dt := range map[string]string{"log": "A\n", "sub/pkg.tar": strings.Repeat("x", 4096)} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(dt), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("sub/pkg.tar", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(dir, "log"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
}

func TestCacheMountRoundTrip(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	csA := testutil.ContentStore(t)
	rootA := t.TempDir()
	keyA := ops.CacheMountKey("/cache", "")
	if _, err := ops.RestoreCacheMount(ctx, rootA, keyA, func(dir string) error { writeTree(t, dir); return nil }); err != nil {
		t.Fatal(err)
	}
	keyBig := ops.CacheMountKey("big", "")
	if _, err := ops.RestoreCacheMount(ctx, rootA, keyBig, func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "huge"), make([]byte, 10000), 0o644)
	}); err != nil {
		t.Fatal(err)
	}

	// Export: the big mount is over the cap and skipped.
	var mounts []remotecache.Mount
	for _, m := range []struct{ id, key string }{{"/cache", keyA}, {"big", keyBig}} {
		_, err := ops.ReadCacheMount(ctx, rootA, m.key, func(dir string) error {
			l, ok, err := ops.PackCacheMount(ctx, csA, dir, 8192)
			if ok {
				mounts = append(mounts, remotecache.Mount{ID: m.id, DirKey: m.key, Layer: l})
			}
			return err
		})
		switch {
		case m.id == "big" && !errors.Is(err, ops.ErrCacheMountTooLarge):
			t.Errorf("packing the big mount: %v, want ErrMountTooLarge", err)
		case m.id != "big" && err != nil:
			t.Fatal(err)
		}
	}
	if len(mounts) != 1 || mounts[0].Layer.MediaType != remotecache.MountMediaType {
		t.Fatalf("packed mounts = %+v, want one of media type %s", mounts, remotecache.MountMediaType)
	}
	dir := filepath.Join(t.TempDir(), "cache")
	if err := remotecache.ToLocal(ctx, csA, nil, dir, records(t, csA), mounts); err != nil {
		t.Fatal(err)
	}

	// Import into an empty root: the mount is listed, and restores to the same files.
	csB := testutil.ContentStore(t)
	im := remotecache.NewImporter(csB, nil)
	if err := im.AddLocal(ctx, dir); err != nil {
		t.Fatal(err)
	}
	got := im.Mounts()
	if len(got) != 1 || got[0].ID != "/cache" || got[0].DirKey != keyA || got[0].Layer.Digest != mounts[0].Layer.Digest {
		t.Fatalf("imported mounts = %+v, want %+v", got, mounts)
	}
	if im.Len() != 3 {
		t.Errorf("imported %d records, want 3", im.Len())
	}
	rootB := t.TempDir()
	created, err := ops.RestoreCacheMount(ctx, rootB, got[0].DirKey, func(dir string) error { return ops.ExtractCacheMount(ctx, csB, im, got[0].Layer, dir) })
	if err != nil || !created {
		t.Fatalf("restoring: %v, %v", created, err)
	}
	b := filepath.Join(rootB, keyA, "0")
	if dt, err := os.ReadFile(filepath.Join(b, "log")); err != nil || string(dt) != "A\n" {
		t.Errorf("restored log = %q, %v", dt, err)
	}
	if dt, err := os.ReadFile(filepath.Join(b, "link")); err != nil || len(dt) != 4096 {
		t.Errorf("restored link reads %d bytes, %v; want 4096", len(dt), err)
	}
	if fi, err := os.Lstat(filepath.Join(b, "log")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 1000 {
		t.Errorf("restored log owner: %v (%v), want uid 1000", fi.Sys(), err)
	}
	if fi, err := os.Stat(b); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("restored dir mode %v (%v), want 0755", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(rootB, keyBig)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the skipped big mount exists on the importing root: %v", err)
	}

	// The same through a registry: the mount blob is fetched only by ExtractMount.
	host, blobGets := remotecachetest.CountingRegistry(t)
	ref := host + "/team/cache:mounts"
	if err := remotecache.ToRegistry(ctx, &remotecachetest.GGCRRemote{CS: csA}, csA, nil, ref, nil, mounts); err != nil {
		t.Fatal(err)
	}
	csR := testutil.ContentStore(t)
	imR := remotecache.NewImporter(csR, nil)
	if err := imR.AddRegistry(ctx, &remotecachetest.GGCRRemote{CS: csR}, ref); err != nil {
		t.Fatal(err)
	}
	before := blobGets.Load()
	rootR := t.TempDir()
	if _, err := ops.RestoreCacheMount(ctx, rootR, keyA, func(dir string) error { return ops.ExtractCacheMount(ctx, csR, imR, imR.Mounts()[0].Layer, dir) }); err != nil {
		t.Fatal(err)
	}
	if n := blobGets.Load() - before; n != 1 {
		t.Errorf("restoring from the registry made %d blob GETs, want 1", n)
	}
	if dt, _ := os.ReadFile(filepath.Join(rootR, keyA, "0", "log")); string(dt) != "A\n" {
		t.Errorf("restored from the registry: log = %q", dt)
	}

	// An existing local cache is never overwritten.
	if err := os.WriteFile(filepath.Join(b, "log"), []byte("B\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if created, err := ops.RestoreCacheMount(ctx, rootB, keyA, func(dir string) error { return ops.ExtractCacheMount(ctx, csB, im, got[0].Layer, dir) }); err != nil || created {
		t.Errorf("restoring over an existing cache: %v, %v; want false, nil", created, err)
	}
	if dt, _ := os.ReadFile(filepath.Join(b, "log")); string(dt) != "B\n" {
		t.Errorf("existing cache was overwritten: log = %q", dt)
	}
}

func TestCacheMountRejectsBadInput(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	cs := testutil.ContentStore(t)

	// A fifo in the cache is refused at export.
	src := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(src, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ops.PackCacheMount(ctx, cs, src, 0); err == nil {
		t.Error("PackCacheMount of a dir with a fifo succeeded")
	}
	// An empty cache exports nothing.
	if _, ok, err := ops.PackCacheMount(ctx, cs, t.TempDir(), 0); ok || err != nil {
		t.Errorf("PackCacheMount(empty) = %v, %v; want false, nil", ok, err)
	}

	// A config naming a dir key that is not a digest is refused on import.
	d, err := cs.WriteBytes(ctx, []byte("mount"))
	if err != nil {
		t.Fatal(err)
	}
	l := cache.Layer{Digest: d, DiffID: digest.FromString("diff mount"), Size: 5, MediaType: remotecache.MountMediaType}
	dir := filepath.Join(t.TempDir(), "cache")
	bad := []remotecache.Mount{{ID: "x", DirKey: "../../etc", Layer: l}}
	if err := remotecache.ToLocal(ctx, cs, nil, dir, nil, bad); err != nil {
		t.Fatal(err)
	}
	if err := remotecache.NewImporter(testutil.ContentStore(t), nil).AddLocal(ctx, dir); err == nil {
		t.Error("AddLocal accepted a mount dir key that is a path")
	}
	// A blob that is not a valid tar is refused and leaves the target empty.
	good := []remotecache.Mount{{ID: "x", DirKey: digest.FromString("x").Encoded(), Layer: l}}
	if err := remotecache.ToLocal(ctx, cs, nil, dir, nil, good); err != nil {
		t.Fatal(err)
	}
	csI := testutil.ContentStore(t)
	im := remotecache.NewImporter(csI, nil)
	if err := im.AddLocal(ctx, dir); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if _, err := ops.RestoreCacheMount(ctx, root, good[0].DirKey, func(d string) error {
		return ops.ExtractCacheMount(ctx, csI, im, im.Mounts()[0].Layer, d)
	}); err == nil {
		t.Error("restoring a mount from a non-tar blob succeeded")
	}
	if _, err := os.Stat(filepath.Join(root, good[0].DirKey, "0")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed restore left the instance dir: %v", err)
	}
}

// records makes three cache records over small blobs in cs, so a cache artifact that
// carries mounts also carries some records.
func records(t *testing.T, cs *content.Store) []remotecache.Record {
	t.Helper()
	var layers []cache.Layer
	var recs []remotecache.Record
	for _, name := range []string{"base", "run", "copy"} {
		d, err := cs.WriteBytes(t.Context(), []byte(name+" layer"))
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, cache.Layer{Digest: d, DiffID: digest.FromString("diff " + name), Size: int64(len(name) + 6), MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"})
		recs = append(recs, remotecache.Record{Key: digest.FromString("k-" + name), Layers: append([]cache.Layer(nil), layers...)})
	}
	return recs
}
