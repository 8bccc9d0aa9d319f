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

// imageOp resolves a registry image (pinned by digest by the frontend, so the vertex
// digest is the key) to its layer chain without downloading a layer: the registry
// client records where the blobs are, and Realize fetches and extracts them only when
// an op reads the filesystem or an exporter needs the bytes.
type imageOp struct {
	d   Deps
	ref string
}

func (*imageOp) CacheKey(context.Context, []solver.Result) (digest.Digest, error) { return "", nil }

func (o *imageOp) Exec(ctx context.Context, _ []solver.Result, _ io.Writer) (cache.Ref, error) {
	res, err := o.d.Images.Resolve(ctx, o.ref)
	if err != nil {
		return cache.Ref{}, err
	}
	layers, err := layerList(o.ref, res.Config, res.Manifest.Layers)
	if err != nil {
		return cache.Ref{}, err
	}
	return cache.Ref{Layers: layers}, nil
}

// layerList pairs an image's manifest layers with its config's diff ids.
func layerList(name string, config []byte, descs []v1.Descriptor) ([]cache.Layer, error) {
	var cfg v1.ConfigFile
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, fmt.Errorf("reading config of %s: %w", name, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(descs) {
		return nil, fmt.Errorf("image %s: manifest has %d layers but config lists %d diff ids", name, len(descs), len(cfg.RootFS.DiffIDs))
	}
	layers := make([]cache.Layer, len(descs))
	for i, desc := range descs {
		layers[i] = cache.Layer{
			DiffID:    digest.Digest(cfg.RootFS.DiffIDs[i].String()),
			Digest:    digest.Digest(desc.Digest.String()),
			Size:      desc.Size,
			MediaType: string(desc.MediaType),
		}
	}
	return layers, nil
}

// imageLayers makes the filesystem of an image from its config and manifest layers:
// fetch puts each layer's blob into the content store (a no-op when it is there), then
// the layer is extracted into its snapshot, a few layers at a time. name is the image
// in errors.
func imageLayers(ctx context.Context, d Deps, name string, config []byte, descs []v1.Descriptor, fetch func(context.Context, v1.Descriptor, cache.Layer) error) (cache.Ref, error) {
	layers, err := layerList(name, config, descs)
	if err != nil {
		return cache.Ref{}, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(3)
	for i, desc := range descs {
		g.Go(func() error {
			if err := fetch(gctx, desc, layers[i]); err != nil {
				return err
			}
			return ingestLayer(gctx, d, layers[i], name)
		})
	}
	if err := g.Wait(); err != nil {
		return cache.Ref{}, err
	}
	return cache.Ref{Layers: layers}, nil
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
