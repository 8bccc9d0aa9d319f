package remotecache

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
)

// BlobFetcher puts a layer's blob into the content store; exports use it for layers a
// lazy build never downloaded, and only when a sink really reads the bytes.
type BlobFetcher interface {
	FetchBlob(ctx context.Context, l cache.Layer) error
}

// Pusher writes an image to a registry reference, skipping blobs it has.
type Pusher interface {
	Push(ctx context.Context, ref string, img v1.Image) error
}

// latestTag names the cache manifest in an OCI layout directory.
const latestTag = "latest"

// Artifact returns the cache artifact of recs as an image: its config is the record
// list, its layers every layer of the records once. Layer bytes are read from cs only
// when a sink asks for them; a blob missing from cs is fetched through fetch first
// (nil: it must be there).
func Artifact(ctx context.Context, cs *content.Store, fetch BlobFetcher, recs []Record, mounts []Mount) (v1.Image, error) {
	cfg := Encode(recs, mounts)
	rawCfg, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encoding cache config: %w", err)
	}
	cfgHash, cfgSize, err := v1.SHA256(bytes.NewReader(rawCfg))
	if err != nil {
		return nil, err
	}
	descs := make([]v1.Descriptor, len(cfg.Layers))
	byDigest := make(map[v1.Hash]cache.Layer, len(cfg.Layers))
	for i, l := range cfg.Layers {
		h, err := v1.NewHash(l.Digest.String())
		if err != nil {
			return nil, fmt.Errorf("layer digest %q: %w", l.Digest, err)
		}
		mt := types.MediaType(l.MediaType)
		if mt == "" {
			mt = types.OCILayer
		}
		descs[i] = v1.Descriptor{MediaType: mt, Size: l.Size, Digest: h}
		byDigest[h] = l
	}
	for _, m := range cfg.Mounts {
		descs[m.Layer].Annotations = map[string]string{AnnotationMountID: m.ID, AnnotationMountDirKey: m.DirKey}
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: ConfigMediaType, Size: cfgSize, Digest: cfgHash},
		Layers:        descs,
	}
	// go-containerregistry's Manifest has no artifactType field; add it to the JSON.
	rawManifest, err := json.Marshal(struct {
		v1.Manifest
		ArtifactType string `json:"artifactType"`
	}{m, ArtifactType})
	if err != nil {
		return nil, fmt.Errorf("encoding cache manifest: %w", err)
	}
	return partial.CompressedToImage(&artifact{ctx: ctx, cs: cs, fetch: fetch, rawManifest: rawManifest, rawConfig: rawCfg, layers: byDigest})
}

// ToRegistry pushes the cache of recs and mounts to ref.
func ToRegistry(ctx context.Context, p Pusher, cs *content.Store, fetch BlobFetcher, ref string, recs []Record, mounts []Mount) error {
	img, err := Artifact(ctx, cs, fetch, recs, mounts)
	if err != nil {
		return err
	}
	if err := p.Push(ctx, ref, img); err != nil {
		return fmt.Errorf("exporting cache to %s: %w", ref, err)
	}
	return nil
}

// ToLocal writes the cache of recs and mounts into the OCI layout directory dir
// (created if needed), tagged latest; blobs the directory has are not written again.
func ToLocal(ctx context.Context, cs *content.Store, fetch BlobFetcher, dir string, recs []Record, mounts []Mount) error {
	img, err := Artifact(ctx, cs, fetch, recs, mounts)
	if err != nil {
		return err
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("exporting cache to %s: %w", dir, err)
		}
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return fmt.Errorf("exporting cache to %s: %w", dir, err)
		}
	}
	ann := map[string]string{ocispec.AnnotationRefName: latestTag}
	if err := p.ReplaceImage(img, match.Name(latestTag), layout.WithAnnotations(ann)); err != nil {
		return fmt.Errorf("exporting cache to %s: %w", dir, err)
	}
	return nil
}

// Inline returns the value of the InlineKey image config field for an image whose
// layers are imageLayers: the records of recs whose layers are all in the image, so
// an importer can take every blob from the image itself.
func Inline(recs []Record, imageLayers []cache.Layer) (json.RawMessage, error) {
	have := make(map[string]bool, len(imageLayers))
	for _, l := range imageLayers {
		have[l.Digest.String()] = true
	}
	var keep []Record
	for _, r := range recs {
		ok := true
		for _, l := range r.Layers {
			ok = ok && have[l.Digest.String()]
		}
		if ok {
			keep = append(keep, r)
		}
	}
	dt, err := json.Marshal(Encode(keep, nil))
	if err != nil {
		return nil, fmt.Errorf("encoding inline cache: %w", err)
	}
	return dt, nil
}

// artifact is the cache manifest as a go-containerregistry image.
type artifact struct {
	ctx         context.Context //nolint:containedctx // go-containerregistry's layer interface takes no context
	cs          *content.Store
	fetch       BlobFetcher
	rawManifest []byte
	rawConfig   []byte
	layers      map[v1.Hash]cache.Layer
}

func (a *artifact) RawConfigFile() ([]byte, error)      { return a.rawConfig, nil }
func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (a *artifact) RawManifest() ([]byte, error)        { return a.rawManifest, nil }

func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h.String() == mustDigest(a.rawConfig) {
		return partial.ConfigLayer(a)
	}
	l, ok := a.layers[h]
	if !ok {
		return nil, fmt.Errorf("cache artifact has no blob %s", h)
	}
	return &blobLayer{a: a, l: l, h: h}, nil
}

func mustDigest(dt []byte) string {
	h, _, _ := v1.SHA256(bytes.NewReader(dt))
	return h.String()
}

// blobLayer is a layer blob of the content store, fetched only when it is read.
type blobLayer struct {
	a *artifact
	l cache.Layer
	h v1.Hash
}

func (b *blobLayer) Digest() (v1.Hash, error) { return b.h, nil }
func (b *blobLayer) Size() (int64, error)     { return b.l.Size, nil }
func (b *blobLayer) MediaType() (types.MediaType, error) {
	if b.l.MediaType == "" {
		return types.OCILayer, nil
	}
	return types.MediaType(b.l.MediaType), nil
}

// Compressed defers opening (and fetching) to the first read: sinks open a layer
// before finding out that the destination has it already.
func (b *blobLayer) Compressed() (io.ReadCloser, error) { return &lazyReader{b: b}, nil }

type lazyReader struct {
	b    *blobLayer
	once sync.Once
	rc   io.ReadCloser
	err  error
}

func (r *lazyReader) open() {
	ctx, a, l := r.b.a.ctx, r.b.a, r.b.l
	if !a.cs.Has(l.Digest) {
		if a.fetch == nil {
			r.err = fmt.Errorf("exporting cache: layer %s is not local", l.Digest)
			return
		}
		if r.err = a.fetch.FetchBlob(ctx, l); r.err != nil {
			return
		}
	}
	r.rc, r.err = a.cs.Open(ctx, l.Digest)
}

func (r *lazyReader) Read(p []byte) (int, error) {
	r.once.Do(r.open)
	if r.err != nil {
		return 0, r.err
	}
	return r.rc.Read(p)
}

func (r *lazyReader) Close() error {
	if r.rc != nil {
		return r.rc.Close()
	}
	return nil
}
