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
)

// formatVersion is the version of Config this package writes and reads.
const formatVersion = 1

// Record is one cache entry: the solver's key and the layer chain of its result.
type Record struct {
	Key     digest.Digest
	Layers  []cache.Layer
	Created time.Time
}

// Config is the cache artifact's config blob: every layer once, and records naming
// their chains by index into Layers, so its size is linear in records plus layers.
type Config struct {
	Version int            `json:"version"`
	Layers  []cache.Layer  `json:"layers"`
	Records []ConfigRecord `json:"records"`
}

// ConfigRecord is a record of Config.
type ConfigRecord struct {
	Key     digest.Digest `json:"key"`
	Layers  []int         `json:"layers"`
	Created time.Time     `json:"created,omitzero"`
}

// Encode makes the Config of recs; a key given twice keeps its first record. Layers
// are listed in order of first use, so the base image's come first.
func Encode(recs []Record) Config {
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
	return cfg
}

// Decode reads a Config and returns its records in order.
func Decode(dt []byte) ([]Record, error) {
	var cfg Config
	if err := json.Unmarshal(dt, &cfg); err != nil {
		return nil, fmt.Errorf("decoding cache config: %w", err)
	}
	return cfg.records()
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
