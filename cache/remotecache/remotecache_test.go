package remotecache_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
	"github.com/builderdev/builder/cache/remotecache"
	"github.com/builderdev/builder/internal/testutil"
)

// ggcrRemote is a minimal Remote/Pusher over go-containerregistry's remote package,
// counting blob downloads.
type ggcrRemote struct {
	cs        *content.Store
	downloads atomic.Int64
}

func (r *ggcrRemote) Fetch(ctx context.Context, ref string) (v1.Manifest, []byte, error) {
	n, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return v1.Manifest{}, nil, err
	}
	img, err := remote.Image(n, remote.WithContext(ctx))
	if err != nil {
		return v1.Manifest{}, nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return v1.Manifest{}, nil, err
	}
	cfg, err := img.RawConfigFile()
	return *m, cfg, err
}

func (r *ggcrRemote) FetchLayer(ctx context.Context, ref string, desc v1.Descriptor) error {
	n, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	l, err := remote.Layer(n.Context().Digest(desc.Digest.String()), remote.WithContext(ctx))
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	r.downloads.Add(1)
	_, err = r.cs.WriteBlob(ctx, rc, desc.Size, digest.Digest(desc.Digest.String()))
	return err
}

func (r *ggcrRemote) Push(ctx context.Context, ref string, img v1.Image) error {
	n, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(n, img, remote.WithContext(ctx))
}

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
	cfg := remotecache.Encode(append(recs, recs[0])) // a duplicate key is kept once
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

// countingRegistry is an in-process registry that counts blob GETs.
func countingRegistry(t *testing.T) (string, *atomic.Int64) {
	var blobGets atomic.Int64
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			blobGets.Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), &blobGets
}

func TestRegistryRoundTripIsLazy(t *testing.T) {
	ctx := context.Background()
	host, blobGets := countingRegistry(t)
	csA := testutil.ContentStore(t)
	recs := records(t, csA)
	ref := host + "/team/cache:main"
	if err := remotecache.ToRegistry(ctx, &ggcrRemote{cs: csA}, csA, nil, ref, recs); err != nil {
		t.Fatal(err)
	}

	csB := testutil.ContentStore(t)
	rB := &ggcrRemote{cs: csB}
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
	if n := rB.downloads.Load(); n != 1 {
		t.Errorf("%d layer downloads, want 1", n)
	}
}

func TestLocalRoundTripAndModes(t *testing.T) {
	ctx := context.Background()
	csA := testutil.ContentStore(t)
	recs := records(t, csA)
	dir := t.TempDir() + "/cache"
	// A first export, then a second with fewer records: latest is replaced.
	if err := remotecache.ToLocal(ctx, csA, nil, dir, recs); err != nil {
		t.Fatal(err)
	}
	if err := remotecache.ToLocal(ctx, csA, nil, dir, recs[:2]); err != nil {
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
	host, _ := countingRegistry(t)
	csA := testutil.ContentStore(t)
	recs := records(t, csA)
	// Push the full cache once, then export from a store that has none of the layers:
	// the registry has them all, so nothing may be fetched.
	ref := host + "/team/cache:a"
	if err := remotecache.ToRegistry(ctx, &ggcrRemote{cs: csA}, csA, nil, ref, recs); err != nil {
		t.Fatal(err)
	}
	csB := testutil.ContentStore(t)
	f := &failFetcher{}
	if err := remotecache.ToRegistry(ctx, &ggcrRemote{cs: csB}, csB, f, host+"/team/cache:a", recs); err != nil {
		t.Fatal(err)
	}
	if f.calls.Load() != 0 {
		t.Errorf("export fetched %d blobs the registry had", f.calls.Load())
	}
	// To a registry without them the blobs are needed: they are fetched through the
	// fetcher (go-containerregistry's registry shares blobs across repositories).
	other, _ := countingRegistry(t)
	err := remotecache.ToRegistry(ctx, &ggcrRemote{cs: csB}, csB, f, other+"/team/cache:a", recs)
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
