package cli

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	units "github.com/docker/go-units"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/remotecache"
	"github.com/builderdev/builder/internal/progress"
	"github.com/builderdev/builder/internal/registry"
	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
	"github.com/builderdev/builder/solver/ops"
)

// cacheSpec is one --cache-to or --cache-from.
type cacheSpec struct {
	Type string // registry, local, inline
	Ref  string // registry: the cache manifest; inline (--cache-from): the image
	Dir  string // local: dest (--cache-to) or src (--cache-from)
	Max  bool   // mode=max
	// Mounts (cache-mounts=true) exports the RUN --mount=type=cache directories the
	// build used, each at most MountsMax bytes of files.
	Mounts    bool
	MountsMax int64
}

// defaultCacheMountsMax caps each exported cache mount unless cache-mounts-max-size says
// otherwise: a cache of a gigabyte or more is usually cheaper to rebuild than to move.
const defaultCacheMountsMax = 512 << 20

// cacheToHelp is the --cache-to flag's help.
const cacheToHelp = "export the build cache: type=registry,ref=REF[,mode=min|max] | type=local,dest=DIR[,mode=min|max] | type=inline (in the image config); " +
	"registry and local take cache-mounts=true[,cache-mounts-max-size=512MB] to carry RUN --mount=type=cache contents too"

// parseCacheSpec reads type=registry,ref=REF[,mode=min|max][,compression=gzip],
// type=local,dest=DIR|src=DIR, type=inline; for --cache-from a value without "=" is an
// image reference with inline cache.
func parseCacheSpec(spec string, to bool) (cacheSpec, error) {
	flag := "--cache-from"
	if to {
		flag = "--cache-to"
	}
	if !strings.Contains(spec, "=") {
		if to || spec == "" {
			return cacheSpec{}, fmt.Errorf("%s %q: want type=registry|local|inline,...", flag, spec)
		}
		return cacheSpec{Type: "inline", Ref: spec}, nil
	}
	fields, err := csv.NewReader(strings.NewReader(spec)).Read()
	if err != nil {
		return cacheSpec{}, fmt.Errorf("%s %q: %w", flag, spec, err)
	}
	c := cacheSpec{MountsMax: defaultCacheMountsMax}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return cacheSpec{}, fmt.Errorf("%s %q: %q is not key=value", flag, spec, f)
		}
		switch k = strings.ToLower(strings.TrimSpace(k)); k {
		case "type":
			c.Type = v
		case "ref":
			c.Ref = v
		case "dest", "src":
			if (k == "dest") != to {
				return cacheSpec{}, fmt.Errorf("%s %q: %s is for --cache-%s", flag, spec, k, map[bool]string{true: "to", false: "from"}[k == "dest"])
			}
			c.Dir = v
		case "mode":
			switch v {
			case "min":
			case "max":
				c.Max = true
			default:
				return cacheSpec{}, fmt.Errorf("%s %q: mode=%q: want min or max", flag, spec, v)
			}
		case "compression":
			// Layers are stored gzip-compressed and exported as they are.
			if v != "gzip" {
				return cacheSpec{}, fmt.Errorf("%s %q: compression=%q: only gzip is supported for cache export", flag, spec, v)
			}
		case "cache-mounts", "cache-mounts-max-size":
			if !to {
				return cacheSpec{}, fmt.Errorf("%s %q: %s is for --cache-to", flag, spec, k)
			}
			if k == "cache-mounts" {
				if c.Mounts, err = strconv.ParseBool(v); err != nil {
					return cacheSpec{}, fmt.Errorf("%s %q: cache-mounts=%q: want true or false", flag, spec, v)
				}
				continue
			}
			if c.MountsMax, err = units.RAMInBytes(v); err != nil || c.MountsMax <= 0 {
				return cacheSpec{}, fmt.Errorf("%s %q: cache-mounts-max-size=%q: want a size such as 100MB", flag, spec, v)
			}
		case "ignore-error", "oci-mediatypes", "image-manifest":
			// buildx attributes that change nothing here: the cache is always an OCI
			// image manifest, and export errors are warnings.
		default:
			return cacheSpec{}, fmt.Errorf("%s %q: unknown attribute %q", flag, spec, k)
		}
	}
	switch c.Type {
	case "registry":
		if c.Ref == "" {
			return cacheSpec{}, fmt.Errorf("%s %q: type=registry needs ref=", flag, spec)
		}
	case "local":
		if c.Dir == "" {
			return cacheSpec{}, fmt.Errorf("%s %q: type=local needs %s=", flag, spec, map[bool]string{true: "dest", false: "src"}[to])
		}
	case "inline":
		if c.Mounts {
			return cacheSpec{}, fmt.Errorf("%s %q: cache-mounts needs type=registry or type=local", flag, spec)
		}
		if !to && c.Ref == "" {
			return cacheSpec{}, fmt.Errorf("%s %q: type=inline needs ref=", flag, spec)
		}
	default:
		return cacheSpec{}, fmt.Errorf("%s %q: type %q: want registry, local or inline", flag, spec, c.Type)
	}
	return c, nil
}

func parseCacheSpecs(specs []string, to bool) ([]cacheSpec, error) {
	out := make([]cacheSpec, 0, len(specs))
	for _, s := range specs {
		c, err := parseCacheSpec(s, to)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// cacheRemote adapts the registry client to remotecache.
type cacheRemote struct{ c *registry.Client }

func (r cacheRemote) Fetch(ctx context.Context, ref string) (v1.Manifest, []byte, error) {
	res, err := r.c.Resolve(ctx, ref)
	if err != nil {
		return v1.Manifest{}, nil, err
	}
	return res.Manifest, res.Config, nil
}

func (r cacheRemote) FetchLayer(ctx context.Context, ref string, desc v1.Descriptor) error {
	return r.c.FetchLayer(ctx, ref, desc)
}

func (r cacheRemote) Push(ctx context.Context, ref string, img v1.Image) error {
	return r.c.Push(ctx, ref, img)
}

// importCaches reads every --cache-from in order. A cache that cannot be read is a
// warning: the build then runs the steps it would have reused. Cache mounts the caches
// carry are restored into mountRoot at once (eagerly: a RUN step binds the directory,
// there is no cheap point to fetch it lazily), where the root has no such cache yet.
func importCaches(ctx context.Context, im *remotecache.Importer, reg *registry.Client, specs []cacheSpec, mountRoot string, p *progress.Printer) error {
	if len(specs) == 0 {
		return nil
	}
	// A cache tag moves with every export: always ask the registry.
	fresh, err := reg.With(registry.WithAlwaysPull())
	if err != nil {
		return err
	}
	r := cacheRemote{fresh}
	for _, c := range specs {
		var err error
		switch c.Type {
		case "registry":
			err = im.AddRegistry(ctx, r, c.Ref)
		case "local":
			err = im.AddLocal(ctx, c.Dir)
		case "inline":
			err = im.AddInline(ctx, r, c.Ref)
		}
		if err != nil {
			p.Printf("warning: %v", err)
		}
	}
	p.Printf("importing cache: %d records", im.Len())
	restoreCacheMounts(ctx, im, mountRoot, p)
	return nil
}

// restoreCacheMounts extracts the imported cache mounts missing from root. A mount
// that cannot be restored is a warning: the RUN step starts with an empty cache.
func restoreCacheMounts(ctx context.Context, im *remotecache.Importer, root string, p *progress.Printer) {
	n := 0
	for _, m := range im.Mounts() {
		created, err := ops.RestoreCacheMount(ctx, root, m.DirKey, func(dir string) error {
			if err := ops.ExtractCacheMount(ctx, im.Content(), im, m.Layer, dir); err != nil {
				return fmt.Errorf("extracting cache mount %q: %w", m.ID, err)
			}
			return nil
		})
		if err != nil {
			p.Printf("warning: restoring cache mount %q: %v", m.ID, err)
		}
		if created {
			n++
		}
	}
	if len(im.Mounts()) > 0 {
		p.Printf("importing cache: restored %d of %d cache mounts", n, len(im.Mounts()))
	}
}

// cacheMountUse is a cache mount a build's RUN steps name.
type cacheMountUse struct {
	id, dirKey string
}

// usedCacheMounts are the cache mounts of every exec of the builds' graphs, once per
// directory, with the directory key the exec op computes (id, and the seed result's
// key for from=).
func usedCacheMounts(builds []*platformBuild) []cacheMountUse {
	var out []cacheMountUse
	seen := map[string]bool{}
	for _, b := range builds {
		if b.out == nil {
			continue
		}
		_ = llb.Walk(b.out, func(v *llb.Vertex) error {
			op, ok := v.Op().(*llb.ExecOp)
			if !ok {
				return nil
			}
			for _, m := range op.Mounts {
				if m.Type != llb.MountCache {
					continue
				}
				id := m.CacheID
				if id == "" {
					id = m.Target
				}
				var seed digest.Digest
				if m.Input != llb.NoInput {
					seed = b.results[v.Inputs()[m.Input].Digest()].Key
				}
				key := ops.CacheMountKey(id, seed)
				if !seen[key] {
					seen[key] = true
					out = append(out, cacheMountUse{id: id, dirKey: key})
				}
			}
			return nil
		})
	}
	return out
}

// packCacheMounts stores the used cache mounts' contents as blobs. A mount over maxSize,
// in exclusive use or unreadable is left out with a warning.
func packCacheMounts(ctx context.Context, st *store, builds []*platformBuild, maxSize int64, p *progress.Printer) []remotecache.Mount {
	var out []remotecache.Mount
	for _, u := range usedCacheMounts(builds) {
		var l cache.Layer
		var packed bool
		_, err := ops.ReadCacheMount(ctx, st.cacheMounts(), u.dirKey, func(dir string) error {
			var err error
			l, packed, err = ops.PackCacheMount(ctx, st.content, dir, maxSize)
			return err
		})
		switch {
		case err != nil:
			p.Printf("warning: skipping cache mount %q: %v", u.id, err)
		case packed:
			out = append(out, remotecache.Mount{ID: u.id, DirKey: u.dirKey, Layer: l})
		}
	}
	return out
}

// cacheRecords are the records --cache-to exports: with max every result of every
// stage that has layers, with min those of the final image's chain (the output vertex
// and its root/base inputs back to the base image).
func cacheRecords(builds []*platformBuild, max bool) []remotecache.Record {
	var recs []remotecache.Record
	seen := map[digest.Digest]bool{}
	add := func(r solver.Result) {
		if r.Key == "" || r.Ref.LocalDir != "" || len(r.Ref.Layers) == 0 || seen[r.Key] {
			return
		}
		seen[r.Key] = true
		recs = append(recs, remotecache.Record{Key: r.Key, Layers: r.Ref.Layers, Created: r.Created})
	}
	for _, b := range builds {
		if b.out == nil {
			continue
		}
		if max {
			// Walk gives a stable order (inputs first), so the manifest is the same
			// for the same graph.
			_ = llb.Walk(b.out, func(v *llb.Vertex) error {
				add(b.results[v.Digest()])
				return nil
			})
			continue
		}
		for v := b.out; v != nil; {
			add(b.results[v.Digest()])
			base := llb.NoInput
			switch op := v.Op().(type) {
			case *llb.ExecOp:
				base = op.Root
			case *llb.FileOp:
				base = op.Base
			}
			if base == llb.NoInput {
				break
			}
			v = v.Inputs()[base]
		}
	}
	return recs
}

// withInlineCache adds the inline cache field to b's image config.
func withInlineCache(b *platformBuild) error {
	raw, err := remotecache.Inline(cacheRecords([]*platformBuild{b}, false), b.final.Layers)
	if err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b.cfg, &fields); err != nil {
		return fmt.Errorf("adding inline cache: %w", err)
	}
	fields[remotecache.InlineKey] = raw
	if b.cfg, err = json.Marshal(fields); err != nil {
		return fmt.Errorf("adding inline cache: %w", err)
	}
	return nil
}

// fetchFinal makes the final images' bytes local before the exporters read them:
// blobs for image outputs and tags, extracted snapshots for filesystem outputs. A
// build with neither fetches nothing.
func fetchFinal(ctx context.Context, d ops.Deps, builds []*platformBuild, tagged bool, outputs []Output) error {
	blobs, files := tagged, false
	for _, out := range outputs {
		if out.image() {
			blobs = true
		} else {
			files = true
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, b := range builds {
		if files {
			g.Go(func() error { return ops.Realize(gctx, d, b.final) })
			continue
		}
		if !blobs {
			continue
		}
		for _, l := range b.final.Layers {
			g.Go(func() error { return d.Blobs.FetchBlob(gctx, l) })
		}
	}
	return g.Wait()
}

// exportCaches writes every --cache-to but inline (which went into the image config).
func exportCaches(ctx context.Context, st *store, reg *registry.Client, fetch remotecache.BlobFetcher, builds []*platformBuild, specs []cacheSpec, p *progress.Printer) error {
	// Packed once per cap: several --cache-to usually share it.
	packed := map[int64][]remotecache.Mount{}
	for _, c := range specs {
		if c.Type == "inline" {
			continue
		}
		recs := cacheRecords(builds, c.Max)
		var mounts []remotecache.Mount
		if c.Mounts {
			var ok bool
			if mounts, ok = packed[c.MountsMax]; !ok {
				mounts = packCacheMounts(ctx, st, builds, c.MountsMax, p)
				packed[c.MountsMax] = mounts
			}
		}
		var err error
		switch c.Type {
		case "registry":
			p.Printf("exporting cache to %s (%d records, %d cache mounts)", c.Ref, len(recs), len(mounts))
			err = remotecache.ToRegistry(ctx, cacheRemote{reg}, st.content, fetch, c.Ref, recs, mounts)
		case "local":
			p.Printf("exporting cache to %s (%d records, %d cache mounts)", c.Dir, len(recs), len(mounts))
			err = remotecache.ToLocal(ctx, st.content, fetch, c.Dir, recs, mounts)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
