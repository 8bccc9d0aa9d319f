package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
	"github.com/builderdev/builder/worker/diff"
)

// localOp is a directory of the client (the build context), read in place. Its key says
// nothing about the content: ops that read from it add checksums of what they read.
type localOp struct {
	dir    string
	ignore []string
}

func newLocalOp(dir string, attrs map[string]string) (localOp, error) {
	o := localOp{dir: dir}
	if v := attrs[llb.AttrLocalExcludes]; v != "" {
		if err := json.Unmarshal([]byte(v), &o.ignore); err != nil {
			return localOp{}, fmt.Errorf("decoding %s of local source: %w", llb.AttrLocalExcludes, err)
		}
	}
	return o, nil
}

func (localOp) CacheKey(context.Context, []solver.Result) (digest.Digest, error) { return "", nil }

func (o localOp) Exec(context.Context, []solver.Result, io.Writer) (cache.Ref, error) {
	return cache.Ref{LocalDir: o.dir, LocalIgnore: o.ignore}, nil
}

// imageOp pulls a registry image (pinned by digest by the frontend, so the vertex digest
// is the key) and extracts each layer once into a snapshot.
type imageOp struct {
	d   Deps
	ref string
}

func (*imageOp) CacheKey(context.Context, []solver.Result) (digest.Digest, error) { return "", nil }

func (o *imageOp) Exec(ctx context.Context, _ []solver.Result, logs io.Writer) (cache.Ref, error) {
	res, err := o.d.Images.Resolve(ctx, o.ref)
	if err != nil {
		return cache.Ref{}, err
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(res.Config, &cfg); err != nil {
		return cache.Ref{}, fmt.Errorf("reading config of %s: %w", o.ref, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(res.Manifest.Layers) {
		return cache.Ref{}, fmt.Errorf("image %s: manifest has %d layers but config lists %d diff ids", o.ref, len(res.Manifest.Layers), len(cfg.RootFS.DiffIDs))
	}
	layers := make([]cache.Layer, len(res.Manifest.Layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(3)
	for i, desc := range res.Manifest.Layers {
		layers[i] = cache.Layer{
			DiffID:    digest.Digest(cfg.RootFS.DiffIDs[i].String()),
			Digest:    digest.Digest(desc.Digest.String()),
			Size:      desc.Size,
			MediaType: string(desc.MediaType),
		}
		g.Go(func() error { return o.pullLayer(gctx, desc, layers[i], logs) })
	}
	if err := g.Wait(); err != nil {
		return cache.Ref{}, err
	}
	return cache.Ref{Layers: layers}, nil
}

func (o *imageOp) pullLayer(ctx context.Context, desc v1.Descriptor, l cache.Layer, logs io.Writer) error {
	// The blob is kept even when the snapshot exists: exporters read layers from it.
	if !o.d.Content.Has(l.Digest) {
		fmt.Fprintf(logs, "pulling %s (%d bytes)\n", l.Digest, l.Size)
		if err := o.d.Images.FetchLayer(ctx, o.ref, desc); err != nil {
			return err
		}
	}
	return ingestLayer(ctx, o.d, l, o.ref)
}

// ingestLayer extracts layer l, whose blob is in the content store, into its snapshot
// unless that exists, checking the diff id. of names the image in errors. Registry
// pulls and OCI layouts both end here.
func ingestLayer(ctx context.Context, d Deps, l cache.Layer, of string) error {
	id := cache.SnapshotID(l.DiffID)
	if d.Snapshots.Exists(id) {
		return nil
	}
	f, err := d.Content.Open(ctx, l.Digest)
	if err != nil {
		return err
	}
	defer f.Close()
	a, err := d.Snapshots.Ingest(ctx)
	if err != nil {
		return err
	}
	defer a.Discard(ctx)
	got, err := diff.Apply(ctx, f, a.UpperDir())
	if err != nil {
		return fmt.Errorf("extracting layer %s of %s: %w", l.Digest, of, err)
	}
	if got != l.DiffID {
		return fmt.Errorf("layer %s of %s: content has diff id %s, config says %s", l.Digest, of, got, l.DiffID)
	}
	return a.Commit(ctx, id)
}
