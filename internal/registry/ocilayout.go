package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// OCILayoutScheme prefixes references to images in an OCI layout directory.
const OCILayoutScheme = "oci-layout://"

// maxIndexDepth bounds how many nested indexes are followed to reach an image manifest.
const maxIndexDepth = 4

// OCILayoutImage is one platform's image in an OCI layout directory.
type OCILayoutImage struct {
	// Dir is the absolute path of the layout.
	Dir string
	// Ref is oci-layout://Dir@sha256:..., pinned to the image manifest.
	Ref            string
	Manifest       v1.Manifest
	ManifestDigest v1.Hash
	// Config is the raw image config JSON.
	Config []byte
	path   layout.Path
}

// Blob opens blob h of the layout.
func (i *OCILayoutImage) Blob(h v1.Hash) (io.ReadCloser, error) {
	rc, err := i.path.Blob(h)
	if err != nil {
		return nil, fmt.Errorf("opening blob %s of OCI layout %s: %w", h, i.Dir, err)
	}
	return rc, nil
}

// ResolveOCILayout finds the image ref names in an OCI layout directory and returns the
// reference pinned to its image manifest (oci-layout:///ABS@sha256:...) and its raw
// config. ref is oci-layout://PATH[:TAG|@DIGEST]; PATH may be relative to the working
// directory. TAG matches the org.opencontainers.image.ref.name annotation of index.json;
// with neither TAG nor DIGEST the layout must hold exactly one manifest. An index is
// resolved to the linux/GOARCH image.
func ResolveOCILayout(ctx context.Context, ref string) (pinned string, config []byte, err error) {
	return ResolveOCILayoutPlatform(ctx, ref, v1.Platform{OS: "linux", Architecture: runtime.GOARCH})
}

// ResolveOCILayoutPlatform is ResolveOCILayout resolving an index to platform pl's image.
func ResolveOCILayoutPlatform(ctx context.Context, ref string, pl v1.Platform) (pinned string, config []byte, err error) {
	img, err := openOCILayoutRef(ctx, ref, pl)
	if err != nil {
		return "", nil, err
	}
	return img.Ref, img.Config, nil
}

// OpenOCILayout is ResolveOCILayout returning the manifest and access to the blobs.
func OpenOCILayout(ctx context.Context, ref string) (*OCILayoutImage, error) {
	return openOCILayoutRef(ctx, ref, v1.Platform{OS: "linux", Architecture: runtime.GOARCH})
}

func openOCILayoutRef(ctx context.Context, ref string, want v1.Platform) (*OCILayoutImage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir, tag, dgst, err := parseOCILayoutRef(ref)
	if err != nil {
		return nil, err
	}
	img, err := openOCILayout(dir, tag, dgst, want)
	if err != nil {
		return nil, fmt.Errorf("reading OCI layout %s: %w", dir, err)
	}
	return img, nil
}

// parseOCILayoutRef splits oci-layout://PATH[:TAG|@DIGEST] and makes PATH absolute.
func parseOCILayoutRef(ref string) (dir, tag string, dgst v1.Hash, err error) {
	rest, ok := strings.CutPrefix(ref, OCILayoutScheme)
	if !ok || rest == "" {
		return "", "", v1.Hash{}, fmt.Errorf("parsing %q: want oci-layout://PATH[:TAG|@DIGEST]", ref)
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 && strings.Contains(rest[i:], ":") {
		dgst, err = v1.NewHash(rest[i+1:])
		if err != nil {
			return "", "", v1.Hash{}, fmt.Errorf("parsing digest of %q: %w", ref, err)
		}
		rest = rest[:i]
	}
	// A tag follows the last ':' after the last '/': "dir:v1", not "/a:b/dir".
	if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		tag = rest[i+1:]
		rest = rest[:i]
		if tag == "" {
			return "", "", v1.Hash{}, fmt.Errorf("parsing %q: empty tag", ref)
		}
	}
	if rest == "" {
		return "", "", v1.Hash{}, fmt.Errorf("parsing %q: empty path", ref)
	}
	dir, err = filepath.Abs(rest)
	if err != nil {
		return "", "", v1.Hash{}, fmt.Errorf("parsing %q: %w", ref, err)
	}
	return dir, tag, dgst, nil
}

func openOCILayout(dir, tag string, dgst v1.Hash, want v1.Platform) (*OCILayoutImage, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var top v1.Hash
	switch {
	case dgst != v1.Hash{}:
		top = dgst
	case tag != "":
		var names []string
		for _, m := range im.Manifests {
			name := m.Annotations[ocispec.AnnotationRefName]
			if name == tag {
				top = m.Digest
				break
			}
			if name != "" {
				names = append(names, name)
			}
		}
		if top == (v1.Hash{}) {
			return nil, fmt.Errorf("no manifest is tagged %q (the layout has %s)", tag, orNone(names))
		}
	default:
		if len(im.Manifests) != 1 {
			return nil, fmt.Errorf("index.json lists %d manifests; name one with :TAG or @DIGEST", len(im.Manifests))
		}
		top = im.Manifests[0].Digest
	}

	h := top
	for depth := 0; ; depth++ {
		raw, err := verifiedBlob(p, h)
		if err != nil {
			return nil, err
		}
		kind, err := probe(raw)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", h, err)
		}
		if kind == kindManifest {
			var m v1.Manifest
			if err := json.Unmarshal(raw, &m); err != nil {
				return nil, fmt.Errorf("decoding manifest %s: %w", h, err)
			}
			cfg, err := verifiedBlob(p, m.Config.Digest)
			if err != nil {
				return nil, fmt.Errorf("config of manifest %s: %w", h, err)
			}
			return &OCILayoutImage{
				Dir:            dir,
				Ref:            OCILayoutScheme + dir + "@" + h.String(),
				Manifest:       m,
				ManifestDigest: h,
				Config:         cfg,
				path:           p,
			}, nil
		}
		if depth == maxIndexDepth {
			return nil, fmt.Errorf("index %s: more than %d nested indexes", top, maxIndexDepth)
		}
		desc, err := selectPlatform(raw, want)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", h, err)
		}
		h = desc.Digest
	}
}

// verifiedBlob reads a small blob (manifest, index, config) and checks its digest:
// the pinned reference is only as good as the bytes behind it.
func verifiedBlob(p layout.Path, h v1.Hash) ([]byte, error) {
	raw, err := p.Bytes(h)
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", h, err)
	}
	got, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("hashing blob %s: %w", h, err)
	}
	if h.Algorithm == "sha256" && got != h {
		return nil, fmt.Errorf("blob %s has digest %s", h, got)
	}
	return raw, nil
}
