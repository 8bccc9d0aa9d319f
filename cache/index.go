package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Index maps cache keys to results. Each record is one small JSON file named by the key,
// written to a temporary name and renamed into place, so concurrent builder processes
// can share it without locks and a killed process never leaves a half-written record.
// A record is only written after the snapshots and blobs it names are durable.
type Index struct {
	dir string
	// present reports whether a layer's blob and snapshot still exist; a record whose
	// layers are gone (pruned, or never finished) is treated as a miss.
	present func(Layer) bool
}

// Record is what the index stores for a key.
type Record struct {
	Ref Ref `json:"ref"`
	// Created is when the result was first made. Images take their timestamps from it,
	// so a fully cached rebuild yields the same image.
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"lastUsed"`
}

// OpenIndex opens (creating if needed) the index in dir. present may be nil.
func OpenIndex(dir string, present func(Layer) bool) (*Index, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("opening cache index: %w", err)
	}
	return &Index{dir: dir, present: present}, nil
}

func (x *Index) path(key digest.Digest) string {
	return filepath.Join(x.dir, key.Algorithm().String()+"-"+key.Encoded()+".json")
}

// Path is the file that holds key's record, for disk-usage accounting.
func (x *Index) Path(key digest.Digest) string { return x.path(key) }

// Delete removes key's record (prune); a missing record is not an error.
func (x *Index) Delete(_ context.Context, key digest.Digest) error {
	if err := key.Validate(); err != nil {
		return fmt.Errorf("cache key %q: %w", key, err)
	}
	if err := os.Remove(x.path(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing cache record %s: %w", key, err)
	}
	return nil
}

// Get returns the record for key. ok is false on a miss.
func (x *Index) Get(_ context.Context, key digest.Digest) (rec Record, ok bool, err error) {
	if err := key.Validate(); err != nil {
		return Record{}, false, fmt.Errorf("cache key %q: %w", key, err)
	}
	dt, err := os.ReadFile(x.path(key))
	if errors.Is(err, os.ErrNotExist) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("reading cache record %s: %w", key, err)
	}
	if err := json.Unmarshal(dt, &rec); err != nil {
		// A corrupt record is a miss; the next Put replaces it.
		return Record{}, false, nil
	}
	if x.present != nil {
		for _, l := range rec.Ref.Layers {
			if !x.present(l) {
				return Record{}, false, nil
			}
		}
	}
	now := time.Now()
	// Last-used times feed prune; an mtime touch is cheaper than rewriting the record.
	_ = os.Chtimes(x.path(key), now, now)
	rec.LastUsed = now
	return rec, true, nil
}

// Put records rec as the result of key, replacing any earlier record. A zero
// rec.Created is set to now.
func (x *Index) Put(_ context.Context, key digest.Digest, rec Record) error {
	if err := key.Validate(); err != nil {
		return fmt.Errorf("cache key %q: %w", key, err)
	}
	now := time.Now().UTC()
	if rec.Created.IsZero() {
		rec.Created = now
	}
	rec.LastUsed = now
	dt, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encoding cache record: %w", err)
	}
	return WriteFileAtomic(x.path(key), dt)
}

// List returns every readable record by key, without touching last-used times: du and
// garbage collection read it, and only builds count as use. LastUsed is the file's
// mtime, which Get touches. Records naming missing layers are included, so that what
// still refers to a layer can be known.
func (x *Index) List(ctx context.Context) (map[digest.Digest]Record, error) {
	ents, err := os.ReadDir(x.dir)
	if err != nil {
		return nil, fmt.Errorf("listing cache index: %w", err)
	}
	out := make(map[digest.Digest]Record, len(ents))
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		alg, hex, ok := strings.Cut(name, "-")
		key := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
		if !ok || key.Validate() != nil {
			continue // temp files of WriteFileAtomic and strangers
		}
		p := filepath.Join(x.dir, e.Name())
		dt, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading cache record %s: %w", key, err)
		}
		var rec Record
		if json.Unmarshal(dt, &rec) != nil {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			rec.LastUsed = fi.ModTime()
		}
		out[key] = rec
	}
	return out, nil
}
