package exporter

import (
	"errors"
	"fmt"
	"maps"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// PlatformImage is one platform's image of a multi-platform build.
type PlatformImage struct {
	Platform v1.Platform
	Image    v1.Image
	// Annotations go on the image's descriptor in the index.
	Annotations map[string]string
}

// Index returns the multi-platform index of images: one manifest descriptor per image,
// in the order given, each with its platform set. It is an OCI image index unless
// WithDockerMediaTypes, which makes a Docker manifest list (then every image must be a
// Docker manifest too, since a list cannot name OCI manifests for Docker clients).
// WithManifestAnnotations sets the index's own annotations (OCI only). Like Image, it
// is lazy: nothing is read until a sink asks.
func Index(images []PlatformImage, opts ...ImageOption) (v1.ImageIndex, error) {
	var o imageOptions
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if len(images) == 0 {
		return nil, errors.New("an index needs at least one image")
	}
	if o.docker && len(o.annotations) > 0 {
		return nil, errors.New(`cannot export annotations with "oci-mediatypes=false"`)
	}
	adds := make([]mutate.IndexAddendum, 0, len(images))
	seen := map[string]bool{}
	for _, pi := range images {
		if pi.Platform.OS == "" || pi.Platform.Architecture == "" {
			return nil, fmt.Errorf("index entry %q: os and architecture are required", pi.Platform.String())
		}
		if seen[pi.Platform.String()] {
			return nil, fmt.Errorf("index has two images for %s", pi.Platform.String())
		}
		seen[pi.Platform.String()] = true
		mt, err := pi.Image.MediaType()
		if err != nil {
			return nil, err
		}
		if o.docker && mt != types.DockerManifestSchema2 {
			return nil, fmt.Errorf("image for %s has media type %s: a Docker manifest list holds Docker manifests", pi.Platform.String(), mt)
		}
		p := pi.Platform
		d := v1.Descriptor{MediaType: mt, Platform: &p}
		if len(pi.Annotations) > 0 {
			if o.docker {
				return nil, errors.New(`cannot export annotations with "oci-mediatypes=false"`)
			}
			d.Annotations = maps.Clone(pi.Annotations)
		}
		adds = append(adds, mutate.IndexAddendum{Add: pi.Image, Descriptor: d})
	}
	var idx v1.ImageIndex = empty.Index
	if o.docker {
		idx = mutate.IndexMediaType(idx, types.DockerManifestList)
	}
	idx = mutate.AppendManifests(idx, adds...)
	if len(o.annotations) > 0 {
		a, ok := mutate.Annotations(idx, o.annotations).(v1.ImageIndex)
		if !ok {
			return nil, errors.New("annotating the index")
		}
		idx = a
	}
	return idx, nil
}
