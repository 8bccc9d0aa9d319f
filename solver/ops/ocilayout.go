package ops

import (
	"context"
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	digest "github.com/opencontainers/go-digest"

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
	return imageLayers(ctx, o.d, img.Ref, img.Config, img.Manifest.Layers, func(ctx context.Context, desc v1.Descriptor, _ cache.Layer) error {
		return o.copyBlob(ctx, img, desc, logs)
	})
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
