package exporter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
)

// Exporter is a sink for a finished image.
type Exporter interface {
	Export(ctx context.Context, img v1.Image) error
}

// ImageOption configures Image.
type ImageOption func(*imageOptions) error

type imageOptions struct {
	docker      bool
	annotations map[string]string
}

// WithDockerMediaTypes makes a Docker schema 2 manifest (Docker config and layer media
// types) instead of an OCI one. zstd layers cannot be named this way.
func WithDockerMediaTypes() ImageOption {
	return func(o *imageOptions) error { o.docker = true; return nil }
}

// WithManifestAnnotations sets the manifest's annotations (OCI media types only).
func WithManifestAnnotations(a map[string]string) ImageOption {
	return func(o *imageOptions) error {
		if len(a) == 0 {
			return nil
		}
		if o.annotations == nil {
			o.annotations = map[string]string{}
		}
		for k, v := range a {
			o.annotations[k] = v
		}
		return nil
	}
}

// Image returns an image whose layers are the given blobs in cs, base first, and whose
// config is cfg (OCI image config JSON) with rootfs.diff_ids set from layers. Other
// config fields, history included, are kept as given. The manifest uses OCI media
// types unless WithDockerMediaTypes; layer media types are mapped to the chosen family
// (the bytes are the same). Layer blobs are only opened when a sink reads them.
func Image(ctx context.Context, cs *content.Store, layers []cache.Layer, cfg []byte, opts ...ImageOption) (v1.Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var o imageOptions
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.docker && len(o.annotations) > 0 {
		return nil, errors.New(`cannot export annotations with "oci-mediatypes=false"`)
	}
	fields := map[string]json.RawMessage{}
	if len(cfg) > 0 {
		if err := json.Unmarshal(cfg, &fields); err != nil {
			return nil, fmt.Errorf("decoding image config: %w", err)
		}
	}
	diffIDs := make([]string, len(layers))
	descs := make([]v1.Descriptor, len(layers))
	byDigest := make(map[v1.Hash]v1.Hash, len(layers))
	for i, l := range layers {
		desc, diffID, err := layerDescriptor(cs, l)
		if err != nil {
			return nil, err
		}
		if o.docker {
			if desc.MediaType, err = dockerLayerType(desc.MediaType); err != nil {
				return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
			}
		}
		diffIDs[i] = diffID.String()
		descs[i] = desc
		byDigest[desc.Digest] = diffID
	}
	rootfs, err := json.Marshal(struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	}{"layers", diffIDs})
	if err != nil {
		return nil, err
	}
	fields["rootfs"] = rootfs
	rawCfg, err := json.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("encoding image config: %w", err)
	}
	cfgHash, cfgSize, err := v1.SHA256(bytes.NewReader(rawCfg))
	if err != nil {
		return nil, err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Size: cfgSize, Digest: cfgHash},
		Layers:        descs,
		Annotations:   o.annotations,
	}
	if o.docker {
		m.MediaType, m.Config.MediaType = types.DockerManifestSchema2, types.DockerConfigJSON
	}
	rawManifest, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding manifest: %w", err)
	}
	return partial.CompressedToImage(&storeImage{cs: cs, manifest: m, rawManifest: rawManifest, rawConfig: rawCfg, diffIDs: byDigest})
}

// Stored returns the image whose manifest blob m is in cs, with exactly the stored
// manifest and config bytes (so its digest is m). Layers are read lazily from cs.
func Stored(ctx context.Context, cs *content.Store, m v1.Hash) (v1.Image, error) {
	rawManifest, err := cs.ReadAll(ctx, digest.Digest(m.String()))
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", m, err)
	}
	var man v1.Manifest
	if err := json.Unmarshal(rawManifest, &man); err != nil {
		return nil, fmt.Errorf("decoding manifest %s: %w", m, err)
	}
	if man.MediaType == "" {
		man.MediaType = types.OCIManifestSchema1
	}
	rawCfg, err := cs.ReadAll(ctx, digest.Digest(man.Config.Digest.String()))
	if err != nil {
		return nil, fmt.Errorf("reading config of %s: %w", m, err)
	}
	var cfg struct {
		RootFS struct {
			DiffIDs []v1.Hash `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(rawCfg, &cfg); err != nil {
		return nil, fmt.Errorf("decoding config of %s: %w", m, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(man.Layers) {
		return nil, fmt.Errorf("image %s: config lists %d layers, manifest %d", m, len(cfg.RootFS.DiffIDs), len(man.Layers))
	}
	byDigest := make(map[v1.Hash]v1.Hash, len(man.Layers))
	for i, l := range man.Layers {
		byDigest[l.Digest] = cfg.RootFS.DiffIDs[i]
	}
	return partial.CompressedToImage(&storeImage{cs: cs, manifest: man, rawManifest: rawManifest, rawConfig: rawCfg, diffIDs: byDigest})
}

// layerDescriptor is l's manifest entry, with the media type in OCI terms.
func layerDescriptor(cs *content.Store, l cache.Layer) (v1.Descriptor, v1.Hash, error) {
	h, err := v1.NewHash(l.Digest.String())
	if err != nil {
		return v1.Descriptor{}, v1.Hash{}, fmt.Errorf("layer digest %q: %w", l.Digest, err)
	}
	diffID, err := v1.NewHash(l.DiffID.String())
	if err != nil {
		return v1.Descriptor{}, v1.Hash{}, fmt.Errorf("layer %s: diffID %q: %w", l.Digest, l.DiffID, err)
	}
	size := l.Size
	if size <= 0 {
		// An unknown size is looked up; a missing blob shows here rather than mid-export.
		if size, err = cs.Size(l.Digest); err != nil {
			return v1.Descriptor{}, v1.Hash{}, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
	}
	return v1.Descriptor{MediaType: ociLayerType(types.MediaType(l.MediaType)), Size: size, Digest: h}, diffID, nil
}

// ociLayerType maps Docker layer media types to the OCI ones for the same bytes.
func ociLayerType(mt types.MediaType) types.MediaType {
	switch mt {
	case "", types.DockerLayer:
		return types.OCILayer
	case types.DockerUncompressedLayer:
		return types.OCIUncompressedLayer
	case types.DockerForeignLayer:
		return types.OCIRestrictedLayer
	}
	return mt
}

// dockerLayerType maps an OCI layer media type to the Docker one for the same bytes.
func dockerLayerType(mt types.MediaType) (types.MediaType, error) {
	switch mt {
	case types.OCILayer, types.DockerLayer:
		return types.DockerLayer, nil
	case types.OCIUncompressedLayer, types.DockerUncompressedLayer:
		return types.DockerUncompressedLayer, nil
	case types.OCIRestrictedLayer, types.DockerForeignLayer:
		return types.DockerForeignLayer, nil
	case types.OCILayerZStd:
		return "", errZstdDocker
	}
	return "", fmt.Errorf("media type %s has no Docker equivalent", mt)
}

// storeImage is the go-containerregistry core of an image kept in the content store;
// partial.CompressedToImage derives the rest of v1.Image from it.
type storeImage struct {
	cs          *content.Store
	manifest    v1.Manifest
	rawManifest []byte
	rawConfig   []byte
	diffIDs     map[v1.Hash]v1.Hash // layer digest → diffID
}

var _ partial.CompressedImageCore = (*storeImage)(nil)

func (i *storeImage) RawConfigFile() ([]byte, error)      { return i.rawConfig, nil }
func (i *storeImage) MediaType() (types.MediaType, error) { return i.manifest.MediaType, nil }
func (i *storeImage) RawManifest() ([]byte, error)        { return i.rawManifest, nil }

func (i *storeImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, d := range i.manifest.Layers {
		if d.Digest == h {
			return &blobLayer{cs: i.cs, desc: d, diffID: i.diffIDs[h]}, nil
		}
	}
	return nil, fmt.Errorf("layer %s is not in the image", h)
}

// blobLayer is a layer blob read from the content store.
type blobLayer struct {
	cs     *content.Store
	desc   v1.Descriptor
	diffID v1.Hash
}

var _ partial.WithDiffID = (*blobLayer)(nil)

func (l *blobLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *blobLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *blobLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l *blobLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }

// Compressed opens the blob. The content store verified it when it was written, so
// reading it again is not re-hashed here.
func (l *blobLayer) Compressed() (io.ReadCloser, error) {
	// Content store reads take a context only for cancellation; a sink that is
	// cancelled stops at its own writer.
	f, err := l.cs.Open(context.Background(), digest.Digest(l.desc.Digest.String()))
	if err != nil {
		return nil, fmt.Errorf("reading layer %s: %w", l.desc.Digest, err)
	}
	return f, nil
}
