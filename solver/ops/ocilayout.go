package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/internal/registry"
	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
)

// ociLayoutOp reads an image from an OCI layout directory on this machine
// (--build-context name=oci-layout://...). Its layers are copied into the content store
// and extracted into snapshots exactly as pulled registry layers are.
type ociLayoutOp struct {
	d   Deps
	ref string // oci-layout:///abs@sha256:... as the frontend pinned it
}

func newOCILayoutOp(d Deps, op *llb.SourceOp) (solver.Op, error) {
	if strings.TrimPrefix(op.Identifier, llb.OCILayoutScheme) == "" {
		return nil, fmt.Errorf("source %q: no layout path", op.Identifier)
	}
	return &ociLayoutOp{d: d, ref: op.Identifier}, nil
}

func (o *ociLayoutOp) CacheKey(ctx context.Context, _ []solver.Result) (digest.Digest, error) {
	if pinned(o.ref) {
		// The manifest digest is in the identifier, hence in the vertex digest.
		return "", nil
	}
	img, err := registry.OpenOCILayout(ctx, o.ref)
	if err != nil {
		return "", err
	}
	return digest.Digest(img.ManifestDigest.String()), nil
}

// pinned reports whether ref ends in @alg:hex.
func pinned(ref string) bool {
	i := strings.LastIndex(ref, "@")
	return i >= 0 && strings.Contains(ref[i:], ":")
}

func (o *ociLayoutOp) Exec(ctx context.Context, _ []solver.Result, logs io.Writer) (cache.Ref, error) {
	img, err := registry.OpenOCILayout(ctx, o.ref)
	if err != nil {
		return cache.Ref{}, err
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(img.Config, &cfg); err != nil {
		return cache.Ref{}, fmt.Errorf("reading config of %s: %w", img.Ref, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(img.Manifest.Layers) {
		return cache.Ref{}, fmt.Errorf("image %s: manifest has %d layers but config lists %d diff ids", img.Ref, len(img.Manifest.Layers), len(cfg.RootFS.DiffIDs))
	}
	layers := make([]cache.Layer, len(img.Manifest.Layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(3)
	for i, desc := range img.Manifest.Layers {
		layers[i] = cache.Layer{
			DiffID:    digest.Digest(cfg.RootFS.DiffIDs[i].String()),
			Digest:    digest.Digest(desc.Digest.String()),
			Size:      desc.Size,
			MediaType: string(desc.MediaType),
		}
		g.Go(func() error {
			if err := o.copyBlob(gctx, img, desc, logs); err != nil {
				return err
			}
			return ingestLayer(gctx, o.d, layers[i], img.Ref)
		})
	}
	if err := g.Wait(); err != nil {
		return cache.Ref{}, err
	}
	return cache.Ref{Layers: layers}, nil
}

// copyBlob puts a layer blob of the layout into the content store, verifying its size
// and digest. The blob is kept even when the snapshot exists: exporters read layers
// from the store.
func (o *ociLayoutOp) copyBlob(ctx context.Context, img *registry.OCILayoutImage, desc v1.Descriptor, logs io.Writer) error {
	d := digest.Digest(desc.Digest.String())
	if o.d.Content.Has(d) {
		return nil
	}
	fmt.Fprintf(logs, "copying %s (%d bytes) from %s\n", d, desc.Size, img.Dir)
	rc, err := img.Blob(desc.Digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := o.d.Content.WriteBlob(ctx, rc, desc.Size, d); err != nil {
		return fmt.Errorf("copying layer %s of %s: %w", d, img.Ref, err)
	}
	return nil
}
