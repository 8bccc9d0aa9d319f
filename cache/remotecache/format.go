package remotecache

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
)

// Media types of the cache artifact.
const (
	// ArtifactType is the manifest's artifactType.
	ArtifactType = "application/vnd.builderdev.cache.v1"
	// ConfigMediaType is the media type of the record list (the manifest's config).
	ConfigMediaType = "application/vnd.builderdev.cache.config.v1+json"
	// InlineKey is the top-level image config field that holds the record list of an
	// inline cache (--cache-to type=inline).
	InlineKey = "dev.builder.cache.v1"
	// MountMediaType is the media type of a cache mount's contents (a gzip tar).
	MountMediaType = "application/vnd.builderdev.cache.mount.v1.tar+gzip"
	// AnnotationMountID and AnnotationMountDirKey annotate a cache mount blob's
	// manifest descriptor with the mount's id and directory key.
	AnnotationMountID     = "dev.builder.cache.mount.id"
	AnnotationMountDirKey = "dev.builder.cache.mount.dirKey"
)

// formatVersion is the version of Config this package writes and reads.
const formatVersion = 1

// Record is one cache entry: the solver's key and the layer chain of its result.
type Record struct {
	Key     digest.Digest
	Layers  []cache.Layer
	Created time.Time
}

// Mount is the exported contents of one RUN --mount=type=cache directory: its id, its
// directory key (solver/ops.CacheMountKey: the id and any seed) and its blob.
type Mount struct {
	ID     string
	DirKey string
	Layer  cache.Layer
}

// Config is the cache artifact's config blob: every layer once, and records naming
// their chains by index into Layers, so its size is linear in records plus layers.
type Config struct {
	Version int            `json:"version"`
	Layers  []cache.Layer  `json:"layers"`
	Records []ConfigRecord `json:"records"`
	// Mounts is optional (cache-mounts=true): readers that ignore it lose nothing but
	// the cache mounts, so the version stays 1.
	Mounts []ConfigMount `json:"mounts,omitempty"`
}

// ConfigMount is a cache mount of Config; Layer indexes Config.Layers.
type ConfigMount struct {
	ID     string `json:"id"`
	DirKey string `json:"dirKey"`
	Layer  int    `json:"layer"`
}

// ConfigRecord is a record of Config.
type ConfigRecord struct {
	Key     digest.Digest `json:"key"`
	Layers  []int         `json:"layers"`
	Created time.Time     `json:"created,omitzero"`
}

// Encode makes the Config of recs and mounts; a key (or mount dir key) given twice
// keeps its first entry. Layers are listed in order of first use, so the base image's
// come first and the mounts' last.
func Encode(recs []Record, mounts []Mount) Config {
	cfg := Config{Version: formatVersion, Layers: []cache.Layer{}, Records: make([]ConfigRecord, 0, len(recs))}
	at := map[digest.Digest]int{}
	keys := map[digest.Digest]bool{}
	for _, r := range recs {
		if keys[r.Key] {
			continue
		}
		keys[r.Key] = true
		cr := ConfigRecord{Key: r.Key, Layers: make([]int, len(r.Layers)), Created: r.Created.UTC()}
		for i, l := range r.Layers {
			j, ok := at[l.Digest]
			if !ok {
				j = len(cfg.Layers)
				at[l.Digest] = j
				cfg.Layers = append(cfg.Layers, l)
			}
			cr.Layers[i] = j
		}
		cfg.Records = append(cfg.Records, cr)
	}
	dirs := map[string]bool{}
	for _, m := range mounts {
		if dirs[m.DirKey] {
			continue
		}
		dirs[m.DirKey] = true
		j, ok := at[m.Layer.Digest]
		if !ok {
			j = len(cfg.Layers)
			at[m.Layer.Digest] = j
			cfg.Layers = append(cfg.Layers, m.Layer)
		}
		cfg.Mounts = append(cfg.Mounts, ConfigMount{ID: m.ID, DirKey: m.DirKey, Layer: j})
	}
	return cfg
}

// Decode reads a Config and returns its records in order.
func Decode(dt []byte) ([]Record, error) {
	recs, _, err := decode(dt)
	return recs, err
}

// decode reads a Config and returns its records and cache mounts in order.
func decode(dt []byte) ([]Record, []Mount, error) {
	var cfg Config
	if err := json.Unmarshal(dt, &cfg); err != nil {
		return nil, nil, fmt.Errorf("decoding cache config: %w", err)
	}
	recs, err := cfg.records()
	if err != nil {
		return nil, nil, err
	}
	mounts := make([]Mount, 0, len(cfg.Mounts))
	for _, cm := range cfg.Mounts {
		if cm.Layer < 0 || cm.Layer >= len(cfg.Layers) {
			return nil, nil, fmt.Errorf("cache config: mount %q names layer %d of %d", cm.ID, cm.Layer, len(cfg.Layers))
		}
		// The key becomes a directory name on the importing root.
		if digest.Canonical.Validate(cm.DirKey) != nil {
			return nil, nil, fmt.Errorf("cache config: mount %q: invalid dir key %q", cm.ID, cm.DirKey)
		}
		mounts = append(mounts, Mount{ID: cm.ID, DirKey: cm.DirKey, Layer: cfg.Layers[cm.Layer]})
	}
	return recs, mounts, nil
}

func (cfg Config) records() ([]Record, error) {
	if cfg.Version != formatVersion {
		return nil, fmt.Errorf("cache config version %d: %w", cfg.Version, errors.ErrUnsupported)
	}
	for _, l := range cfg.Layers {
		if l.Digest.Validate() != nil || l.DiffID.Validate() != nil {
			return nil, fmt.Errorf("cache config: invalid layer %q / %q", l.Digest, l.DiffID)
		}
	}
	out := make([]Record, 0, len(cfg.Records))
	for _, cr := range cfg.Records {
		if err := cr.Key.Validate(); err != nil {
			return nil, fmt.Errorf("cache config: record key %q: %w", cr.Key, err)
		}
		r := Record{Key: cr.Key, Created: cr.Created, Layers: make([]cache.Layer, len(cr.Layers))}
		for i, j := range cr.Layers {
			if j < 0 || j >= len(cfg.Layers) {
				return nil, fmt.Errorf("cache config: record %s names layer %d of %d", cr.Key, j, len(cfg.Layers))
			}
			r.Layers[i] = cfg.Layers[j]
		}
		out = append(out, r)
	}
	return out, nil
}
