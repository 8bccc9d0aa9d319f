package remotecache_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
	"github.com/builderdev/builder/cache/remotecache"
	"github.com/builderdev/builder/cache/remotecache/remotecachetest"
	"github.com/builderdev/builder/internal/testutil"
)

// blob stores dt in cs as a layer (the bytes need not be a tar for the format).
func blob(t *testing.T, cs *content.Store, dt string) cache.Layer {
	t.Helper()
	d, err := cs.WriteBytes(context.Background(), []byte(dt))
	if err != nil {
		t.Fatal(err)
	}
	return cache.Layer{Digest: d, DiffID: digest.FromString("diff " + dt), Size: int64(len(dt)), MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"}
}

func records(t *testing.T, cs *content.Store) []remotecache.Record {
	base := blob(t, cs, "base layer")
	run := blob(t, cs, "run layer")
	cp := blob(t, cs, "copy layer")
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	return []remotecache.Record{
		{Key: digest.FromString("k-base"), Layers: []cache.Layer{base}, Created: created},
		{Key: digest.FromString("k-run"), Layers: []cache.Layer{base, run}, Created: created},
		{Key: digest.FromString("k-copy"), Layers: []cache.Layer{base, run, cp}, Created: created},
	}
}

func TestEncodeIsLinearAndRoundTrips(t *testing.T) {
	cs := testutil.ContentStore(t)
	recs := records(t, cs)
	cfg := remotecache.Encode(append(recs, recs[0]), nil) // a duplicate key is kept once
	if len(cfg.Layers) != 3 || len(cfg.Records) != 3 {
		t.Fatalf("Encode: %d layers, %d records; want 3 and 3", len(cfg.Layers), len(cfg.Records))
	}
	if got := cfg.Records[2].Layers; !cmp.Equal(got, []int{0, 1, 2}) {
		t.Errorf("record layers by index = %v, want [0 1 2]", got)
	}
	raw, err := remotecache.Inline(recs, recs[2].Layers)
	if err != nil {
		t.Fatal(err)
	}
	back, err := remotecache.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(recs, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	// Inline keeps only records whose layers are all in the image.
	raw, err = remotecache.Inline(recs, recs[1].Layers)
	if err != nil {
		t.Fatal(err)
	}
	if back, _ := remotecache.Decode(raw); len(back) != 2 {
		t.Errorf("inline for a 2-layer image kept %d records, want 2", len(back))
	}
	if _, err := remotecache.Decode([]byte(`{"version":1,"layers":[],"records":[{"key":"sha256:` + strings.Repeat("a", 64) + `","layers":[3]}]}`)); err == nil {
		t.Error("Decode accepted a record naming a missing layer")
	}
	if _, err := remotecache.Decode([]byte(`{"version":2}`)); err == nil {
		t.Error("Decode accepted version 2")
	}
}

func TestRegistryRoundTripIsLazy(t *testing.T) {
	ctx := context.Background()
	host, blobGets := remotecachetest.CountingRegistry(t)
	csA := testutil.ContentStore(t)
	recs := records(t, csA)
	ref := host + "/team/cache:main"
	if err := remotecache.ToRegistry(ctx, &remotecachetest.GGCRRemote{CS: csA}, csA, nil, ref, recs, nil); err != nil {
		t.Fatal(err)
	}

	csB := testutil.ContentStore(t)
	rB := &remotecachetest.GGCRRemote{CS: csB}
	im := remotecache.NewImporter(csB, nil)
	before := blobGets.Load()
	if err := im.AddRegistry(ctx, rB, ref); err != nil {
		t.Fatal(err)
	}
	// The config is a blob: exactly one GET for it, none for the layers.
	if got := blobGets.Load() - before; got != 1 {
		t.Errorf("import made %d blob GETs, want 1 (the config)", got)
	}
	x := im.Index(emptyIndex{})
	rec, ok, err := x.Get(ctx, recs[2].Key)
	if err != nil || !ok {
		t.Fatalf("Get(imported key) = %v, %v", ok, err)
	}
	if diff := cmp.Diff(recs[2].Layers, rec.Ref.Layers); diff != "" {
		t.Errorf("imported ref (-want +got):\n%s", diff)
	}
	if !rec.Created.Equal(recs[2].Created) {
		t.Errorf("created = %v, want %v", rec.Created, recs[2].Created)
	}
	if _, ok, _ := x.Get(ctx, digest.FromString("unknown")); ok {
		t.Error("Get(unknown key) hit")
	}
	if im.Hits() != 1 {
		t.Errorf("Hits() = %d, want 1", im.Hits())
	}
	// Realizing one layer downloads exactly it.
	l := rec.Ref.Layers[1]
	if err := im.FetchBlob(ctx, l); err != nil {
		t.Fatal(err)
	}
	if err := im.FetchBlob(ctx, l); err != nil { // a second call is a no-op
		t.Fatal(err)
	}
	if !csB.Has(l.Digest) || csB.Has(rec.Ref.Layers[0].Digest) {
		t.Errorf("after FetchBlob: has fetched=%v, has other=%v; want true, false", csB.Has(l.Digest), csB.Has(rec.Ref.Layers[0].Digest))
	}
	if n := rB.Downloads.Load(); n != 1 {
		t.Errorf("%d layer downloads, want 1", n)
	}
}

func TestLocalRoundTripAndModes(t *testing.T) {
	ctx := context.Background()
	csA := testutil.ContentStore(t)
	recs := records(t, csA)
	dir := t.TempDir() + "/cache"
	// A first export, then a second with fewer records: latest is replaced.
	if err := remotecache.ToLocal(ctx, csA, nil, dir, recs, nil); err != nil {
		t.Fatal(err)
	}
	if err := remotecache.ToLocal(ctx, csA, nil, dir, recs[:2], nil); err != nil {
		t.Fatal(err)
	}
	csB := testutil.ContentStore(t)
	im := remotecache.NewImporter(csB, nil)
	if err := im.AddLocal(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if im.Len() != 2 {
		t.Fatalf("imported %d records, want 2 (the latest export)", im.Len())
	}
	if _, ok := im.Lookup(recs[2].Key); ok {
		t.Error("record of the replaced export is still imported")
	}
	for _, l := range recs[1].Layers {
		if err := im.FetchBlob(ctx, l); err != nil {
			t.Fatal(err)
		}
		if !csB.Has(l.Digest) {
			t.Errorf("layer %s not copied from the layout", l.Digest)
		}
	}
	if err := im.FetchBlob(ctx, recs[2].Layers[2]); err == nil {
		t.Error("FetchBlob of a layer no source has succeeded")
	}
	if err := im.AddLocal(ctx, t.TempDir()); err == nil {
		t.Error("AddLocal of an empty dir succeeded")
	}
}

func TestExportFetchesOnlyMissingBlobs(t *testing.T) {
	ctx := context.Background()
	host, _ := remotecachetest.CountingRegistry(t)
	csA := testutil.ContentStore(t)
	recs := records(t, csA)
	// Push the full cache once, then export from a store that has none of the layers:
	// the registry has them all, so nothing may be fetched.
	ref := host + "/team/cache:a"
	if err := remotecache.ToRegistry(ctx, &remotecachetest.GGCRRemote{CS: csA}, csA, nil, ref, recs, nil); err != nil {
		t.Fatal(err)
	}
	csB := testutil.ContentStore(t)
	f := &failFetcher{}
	if err := remotecache.ToRegistry(ctx, &remotecachetest.GGCRRemote{CS: csB}, csB, f, host+"/team/cache:a", recs, nil); err != nil {
		t.Fatal(err)
	}
	if f.calls.Load() != 0 {
		t.Errorf("export fetched %d blobs the registry had", f.calls.Load())
	}
	// To a registry without them the blobs are needed: they are fetched through the
	// fetcher (go-containerregistry's registry shares blobs across repositories).
	other, _ := remotecachetest.CountingRegistry(t)
	err := remotecache.ToRegistry(ctx, &remotecachetest.GGCRRemote{CS: csB}, csB, f, other+"/team/cache:a", recs, nil)
	if err == nil || f.calls.Load() == 0 {
		t.Errorf("export to a new repository: err=%v, %d fetches; want the fetcher's error", err, f.calls.Load())
	}
}

type failFetcher struct{ calls atomic.Int64 }

func (f *failFetcher) FetchBlob(_ context.Context, l cache.Layer) error {
	f.calls.Add(1)
	return fmt.Errorf("no source for %s", l.Digest)
}

type emptyIndex struct{}

func (emptyIndex) Get(context.Context, digest.Digest) (cache.Record, bool, error) {
	return cache.Record{}, false, nil
}
func (emptyIndex) Put(context.Context, digest.Digest, cache.Record) error { return nil }
