package ops

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
)

// storeFetcher serves blobs from another content store (a stand-in for a registry or
// an imported cache) and counts fetches per digest.
type storeFetcher struct {
	from  *content.Store
	to    *content.Store
	mu    sync.Mutex
	count map[digest.Digest]int
}

func (s *storeFetcher) FetchBlob(ctx context.Context, l cache.Layer) error {
	s.mu.Lock()
	s.count[l.Digest]++
	s.mu.Unlock()
	f, err := s.from.Open(ctx, l.Digest)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = s.to.WriteBlob(ctx, f, l.Size, l.Digest)
	return err
}

// remoteChain makes a two-layer chain in a separate store and returns it with a
// fetcher serving it.
func remoteChain(t *testing.T) (cache.Ref, *storeFetcher) {
	t.Helper()
	src := newFixture(t)
	a := src.layer(t, "a", func(root string) error { return os.WriteFile(filepath.Join(root, "a.txt"), []byte("from a\n"), 0o644) })
	b := src.layer(t, "b", func(root string) error { return os.WriteFile(filepath.Join(root, "b.txt"), []byte("from b\n"), 0o644) })
	la := src.results[a.Vertex().Digest()].Ref.Layers[0]
	lb := src.results[b.Vertex().Digest()].Ref.Layers[0]
	return cache.Ref{Layers: []cache.Layer{la, lb}}, &storeFetcher{from: src.d.Content, count: map[digest.Digest]int{}}
}

func TestRealizeFetchesOncePerLayer(t *testing.T) {
	ref, fetch := remoteChain(t)
	f := newFixture(t)
	fetch.to = f.d.Content
	f.d.Blobs = fetch
	f.d.flight = &singleflight.Group{}
	ctx := t.Context()
	g, gctx := errgroup.WithContext(ctx)
	for range 4 {
		g.Go(func() error { return Realize(gctx, f.d, ref) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, l := range ref.Layers {
		if n := fetch.count[l.Digest]; n != 1 {
			t.Errorf("layer %s fetched %d times, want 1", l.Digest, n)
		}
		if !f.d.Content.Has(l.Digest) || !f.d.Snapshots.Exists(cache.SnapshotID(l.DiffID)) {
			t.Errorf("layer %s not realized", l.Digest)
		}
	}
	// Realized layers cost nothing more.
	if err := Realize(ctx, f.d, ref); err != nil {
		t.Fatal(err)
	}
	if n := fetch.count[ref.Layers[0].Digest]; n != 1 {
		t.Errorf("second Realize fetched again (%d)", n)
	}
}

func TestRealizeWithoutFetcherFails(t *testing.T) {
	ref, _ := remoteChain(t)
	f := newFixture(t)
	if err := Realize(t.Context(), f.d, ref); err == nil {
		t.Error("Realize of remote layers without a fetcher succeeded")
	}
}

// A COPY --from a stage whose layers are remote fetches and extracts them first.
func TestFileOpRealizesItsInputs(t *testing.T) {
	ref, fetch := remoteChain(t)
	f := newFixture(t)
	fetch.to = f.d.Content
	f.d.Blobs = fetch
	stage, err := llb.Image("test/remote-stage", llb.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	f.results[stage.Vertex().Digest()] = solver.Result{Key: digest.FromString("remote-stage"), Ref: ref}
	st, err := llb.Scratch().Copy(stage, llb.CopyAction{Src: []string{"/a.txt", "/b.txt"}, Dest: "/out/"}, llb.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := f.solve(t.Context(), st.Vertex())
	if err != nil {
		t.Fatal(err)
	}
	files, _ := f.topLayer(t, r.Ref)
	if files["out/a.txt"] != "from a\n" || files["out/b.txt"] != "from b\n" {
		t.Errorf("copied layer = %v", files)
	}
	for _, l := range ref.Layers {
		if fetch.count[l.Digest] != 1 {
			t.Errorf("input layer %s fetched %d times, want 1", l.Digest, fetch.count[l.Digest])
		}
	}
}
