package remotecache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
)

// Remote is what importing needs of a registry client.
type Remote interface {
	// Fetch returns the image manifest ref names and its raw config blob; layer
	// blobs are not downloaded.
	Fetch(ctx context.Context, ref string) (v1.Manifest, []byte, error)
	// FetchLayer stores blob desc of ref's repository in the content store.
	FetchLayer(ctx context.Context, ref string, desc v1.Descriptor) error
}

// LocalIndex is the cache index of this root (cache.Index).
type LocalIndex interface {
	Get(ctx context.Context, key digest.Digest) (cache.Record, bool, error)
	Put(ctx context.Context, key digest.Digest, rec cache.Record) error
}

// Importer holds the records of every imported cache, in the order they were added
// (the first source that has a key wins), and fetches their blobs on demand. It is
// safe for concurrent use once the sources are added.
type Importer struct {
	cs      *content.Store
	records map[digest.Digest]Record
	// from says which source to fetch each imported blob from.
	from map[digest.Digest]source
	// fallback fetches blobs no source has (base-image layers, through the registry
	// client's recorded blob sources); nil means none.
	fallback BlobFetcher
	// mounts are the imported cache mounts, one per dir key (the first source wins).
	mounts []Mount
	mu     sync.Mutex
	hits   int
}

// source is where an imported cache's blobs are read from.
type source interface {
	fetch(ctx context.Context, cs *content.Store, l cache.Layer) error
}

// NewImporter returns an Importer writing fetched blobs into cs; fallback (may be
// nil) serves blobs no imported cache has.
func NewImporter(cs *content.Store, fallback BlobFetcher) *Importer {
	return &Importer{cs: cs, records: map[digest.Digest]Record{}, from: map[digest.Digest]source{}, fallback: fallback}
}

// Content is the store fetched blobs go into.
func (im *Importer) Content() *content.Store { return im.cs }

// Len is how many records were imported.
func (im *Importer) Len() int { return len(im.records) }

// Hits is how many lookups the imported records answered.
func (im *Importer) Hits() int {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.hits
}

// AddRegistry imports the cache manifest ref (written by ToRegistry): its records,
// with the blobs fetched from ref's repository when needed.
func (im *Importer) AddRegistry(ctx context.Context, r Remote, ref string) error {
	m, rawCfg, err := r.Fetch(ctx, ref)
	if err != nil {
		return fmt.Errorf("importing cache %s: %w", ref, err)
	}
	if m.Config.MediaType != ConfigMediaType {
		return fmt.Errorf("importing cache %s: config media type %q is not a builder cache", ref, m.Config.MediaType)
	}
	recs, mounts, err := decode(rawCfg)
	if err != nil {
		return fmt.Errorf("importing cache %s: %w", ref, err)
	}
	im.add(recs, mounts, registrySource{r: r, ref: ref})
	return nil
}

// AddInline imports the inline cache of image ref (its config's InlineKey field),
// with the blobs fetched from the image's repository. An image without inline cache
// adds nothing and is no error.
func (im *Importer) AddInline(ctx context.Context, r Remote, ref string) error {
	_, rawCfg, err := r.Fetch(ctx, ref)
	if err != nil {
		return fmt.Errorf("importing cache %s: %w", ref, err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(rawCfg, &fields); err != nil {
		return fmt.Errorf("importing cache %s: decoding image config: %w", ref, err)
	}
	raw, ok := fields[InlineKey]
	if !ok {
		return nil
	}
	recs, err := Decode(raw)
	if err != nil {
		return fmt.Errorf("importing cache %s: %w", ref, err)
	}
	im.add(recs, nil, registrySource{r: r, ref: ref})
	return nil
}

// AddLocal imports the cache in the OCI layout directory dir (written by ToLocal).
func (im *Importer) AddLocal(_ context.Context, dir string) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		return fmt.Errorf("importing cache %s: %w", dir, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return fmt.Errorf("importing cache %s: %w", dir, err)
	}
	descs, err := partialFind(idx, match.Name(latestTag))
	if err != nil || len(descs) == 0 {
		return fmt.Errorf("importing cache %s: %w", dir, errors.Join(err, errors.New("no manifest tagged latest")))
	}
	img, err := idx.Image(descs[0].Digest)
	if err != nil {
		return fmt.Errorf("importing cache %s: %w", dir, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("importing cache %s: %w", dir, err)
	}
	if m.Config.MediaType != ConfigMediaType {
		return fmt.Errorf("importing cache %s: config media type %q is not a builder cache", dir, m.Config.MediaType)
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("importing cache %s: %w", dir, err)
	}
	recs, mounts, err := decode(rawCfg)
	if err != nil {
		return fmt.Errorf("importing cache %s: %w", dir, err)
	}
	im.add(recs, mounts, layoutSource{dir: dir})
	return nil
}

func partialFind(idx v1.ImageIndex, m match.Matcher) ([]v1.Descriptor, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []v1.Descriptor
	for _, d := range im.Manifests {
		if m(d) {
			out = append(out, d)
		}
	}
	return out, nil
}

func (im *Importer) add(recs []Record, mounts []Mount, src source) {
	for _, m := range mounts {
		if slices.ContainsFunc(im.mounts, func(o Mount) bool { return o.DirKey == m.DirKey }) {
			continue
		}
		im.mounts = append(im.mounts, m)
		if _, ok := im.from[m.Layer.Digest]; !ok {
			im.from[m.Layer.Digest] = src
		}
	}
	for _, r := range recs {
		if _, ok := im.records[r.Key]; ok {
			continue
		}
		im.records[r.Key] = r
		for _, l := range r.Layers {
			if _, ok := im.from[l.Digest]; !ok {
				im.from[l.Digest] = src
			}
		}
	}
}

// Mounts are the cache mounts of the imported caches (cache-mounts=true), in order.
func (im *Importer) Mounts() []Mount { return slices.Clone(im.mounts) }

// Lookup returns the imported record of key.
func (im *Importer) Lookup(key digest.Digest) (Record, bool) {
	r, ok := im.records[key]
	return r, ok
}

// FetchBlob puts l's blob into the content store, from the imported cache that has it
// or else through the fallback.
func (im *Importer) FetchBlob(ctx context.Context, l cache.Layer) error {
	if im.cs.Has(l.Digest) {
		return nil
	}
	src, ok := im.from[l.Digest]
	if ok {
		err := src.fetch(ctx, im.cs, l)
		if err == nil || im.fallback == nil {
			return err
		}
	}
	if im.fallback == nil {
		return fmt.Errorf("fetching layer %s: no imported cache has it", l.Digest)
	}
	return im.fallback.FetchBlob(ctx, l)
}

// Index returns a cache index that answers from local first and then from the
// imported records. Put goes to local only: an imported record becomes local when a
// step runs on it.
func (im *Importer) Index(local LocalIndex) *Index { return &Index{local: local, im: im} }

// Index is a LocalIndex backed by imported records.
type Index struct {
	local LocalIndex
	im    *Importer
}

func (x *Index) Get(ctx context.Context, key digest.Digest) (cache.Record, bool, error) {
	rec, ok, err := x.local.Get(ctx, key)
	if err != nil || ok {
		return rec, ok, err
	}
	r, ok := x.im.Lookup(key)
	if !ok {
		return cache.Record{}, false, nil
	}
	x.im.mu.Lock()
	x.im.hits++
	x.im.mu.Unlock()
	return cache.Record{Ref: cache.Ref{Layers: append([]cache.Layer(nil), r.Layers...)}, Created: r.Created}, true, nil
}

func (x *Index) Put(ctx context.Context, key digest.Digest, rec cache.Record) error {
	return x.local.Put(ctx, key, rec)
}

type registrySource struct {
	r   Remote
	ref string
}

func (s registrySource) fetch(ctx context.Context, _ *content.Store, l cache.Layer) error {
	h, err := v1.NewHash(l.Digest.String())
	if err != nil {
		return err
	}
	return s.r.FetchLayer(ctx, s.ref, v1.Descriptor{Digest: h, Size: l.Size, MediaType: types.MediaType(l.MediaType)})
}

type layoutSource struct{ dir string }

func (s layoutSource) fetch(ctx context.Context, cs *content.Store, l cache.Layer) error {
	f, err := os.Open(filepath.Join(s.dir, "blobs", l.Digest.Algorithm().String(), l.Digest.Encoded()))
	if err != nil {
		return fmt.Errorf("copying layer %s from %s: %w", l.Digest, s.dir, err)
	}
	defer f.Close()
	if _, err := cs.WriteBlob(ctx, f, l.Size, l.Digest); err != nil {
		return fmt.Errorf("copying layer %s from %s: %w", l.Digest, s.dir, err)
	}
	return nil
}
