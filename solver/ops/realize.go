package ops

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/solver"
)

// realizeJobs is how many layers of one ref are fetched and extracted at once.
const realizeJobs = 3

// Realize makes every layer of ref local: its blob in the content store (fetched
// through d.Blobs) and its extracted snapshot. Refs are lazy: an image source or an
// imported cache hit names layers without fetching them, and only an op that reads
// the filesystem (or an exporter that needs it) pays for the download. A layer being
// realized by another op of the same Deps is waited for, not fetched twice.
func Realize(ctx context.Context, d Deps, ref cache.Ref) error {
	if ref.LocalDir != "" || len(ref.Layers) == 0 {
		return nil
	}
	flight := d.flight
	if flight == nil {
		flight = &singleflight.Group{}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(realizeJobs)
	seen := make(map[string]bool, len(ref.Layers))
	for _, l := range ref.Layers {
		id := cache.SnapshotID(l.DiffID)
		if seen[id] {
			continue
		}
		seen[id] = true
		if d.Content.Has(l.Digest) && d.Snapshots.Exists(id) {
			continue
		}
		g.Go(func() error {
			// DoChan so that a caller whose context ends stops waiting, while the
			// fetch it shares with others goes on for them.
			ch := flight.DoChan(id, func() (any, error) {
				return nil, realizeLayer(context.WithoutCancel(gctx), d, l)
			})
			select {
			case r := <-ch:
				return r.Err
			case <-gctx.Done():
				return context.Cause(gctx)
			}
		})
	}
	return g.Wait()
}

func realizeLayer(ctx context.Context, d Deps, l cache.Layer) error {
	if !d.Content.Has(l.Digest) {
		if d.Blobs == nil {
			return fmt.Errorf("layer %s is not local and no blob source was given", l.Digest)
		}
		if err := d.Blobs.FetchBlob(ctx, l); err != nil {
			return err
		}
		if !d.Content.Has(l.Digest) {
			return fmt.Errorf("fetching layer %s: %w", l.Digest, errors.New("the blob source did not store it"))
		}
	}
	return ingestLayer(ctx, d, l, "a remote source")
}

// realizeInputs realizes every input that is a layer chain: execOp and fileOp read
// all of theirs.
func realizeInputs(ctx context.Context, d Deps, inputs []solver.Result) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, in := range inputs {
		g.Go(func() error { return Realize(gctx, d, in.Ref) })
	}
	return g.Wait()
}
