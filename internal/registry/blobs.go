package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/builderdev/builder/cache"
)

// ErrNoBlobSource is wrapped by FetchBlob when no repository is known to hold a blob.
var ErrNoBlobSource = errors.New("no known repository holds the blob")

// FetchBlob makes sure layer l's compressed blob is in the content store. Layers are
// named by digest only, so the blob is looked for in the repositories recorded as
// holding it (those it was pulled from, pushed to, or resolved as part of an image),
// newest first. It lets a build keep base-image layers lazy: they are fetched only
// when a step runs on them or an output needs their bytes.
func (c *Client) FetchBlob(ctx context.Context, l cache.Layer) error {
	if c.cs.Has(l.Digest) {
		return nil
	}
	h, err := v1.NewHash(l.Digest.String())
	if err != nil {
		return fmt.Errorf("fetching blob %s: %w", l.Digest, err)
	}
	desc := v1.Descriptor{Digest: h, Size: l.Size, MediaType: types.MediaType(l.MediaType)}
	var errs []error
	for _, src := range c.sources(h) {
		host, _, _ := strings.Cut(src, "/")
		repo, err := name.NewRepository(src, c.nameOpts(host)...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = c.fetchBlob(ctx, repo, desc)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("fetching blob %s from %s: %w", l.Digest, src, err)
		}
		errs = append(errs, fmt.Errorf("from %s: %w", src, err))
	}
	if len(errs) == 0 {
		return fmt.Errorf("fetching blob %s: %w", l.Digest, ErrNoBlobSource)
	}
	return fmt.Errorf("fetching blob %s: %w", l.Digest, errors.Join(errs...))
}

// rememberLayerSources records p's repository as a holder of m's layers: resolving an
// image does not download them, yet a later FetchBlob must know where they are.
func (c *Client) rememberLayerSources(p parsed, m v1.Manifest) {
	for _, l := range m.Layers {
		_ = c.rememberSource(p.name(), l.Digest)
	}
}
