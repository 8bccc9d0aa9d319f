// Package imagestore is builder's local image store: names (normalised like Docker's,
// "app" → "docker.io/library/app:latest") mapped to manifests in the content store.
// Each name is one small JSON file replaced atomically, so concurrent builds on one
// root see either the old or the new image under a name, never a torn record.
//
// An image is identified as Docker does, by its ID: the digest of its config. Images
// without a name (loaded by id, or whose name moved to a newer image) are kept as
// untagged records, one per manifest, listed as <none>:<none> until removed.
//
// The store never deletes blobs itself: Remove drops records and Unreferenced says
// which blobs of the removed images no remaining record uses; the caller, which knows
// the other users of the content store (the build cache), deletes what is garbage.
package imagestore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
	"github.com/builderdev/builder/exporter"
	"github.com/builderdev/builder/internal/registry"
)

// ErrNotFound is returned for a name the store does not hold.
var ErrNotFound = errors.New("image not found")

// Store maps image names to manifests in a content store.
type Store struct {
	root string
	cs   *content.Store
}

// Record describes one named image, or one untagged image when Name is "".
type Record struct {
	Name           string  `json:"name"`
	ManifestDigest v1.Hash `json:"manifestDigest"`
	ConfigDigest   v1.Hash `json:"configDigest"`
	// Created is the image config's creation time, or when it was stored if the
	// config has none.
	Created time.Time `json:"created"`
	// Size is the sum of the compressed layers and the config.
	Size int64 `json:"size"`
}

// Open opens (creating if needed) the image store at root, keeping blobs in cs.
func Open(root string, cs *content.Store) (*Store, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("opening image store: %w", err)
	}
	return &Store{root: root, cs: cs}, nil
}

// Config is the local image store as an export sink.
type Config struct {
	Store *Store
	Names []string
}

var _ exporter.Exporter = Config{}

// Export stores img under every name.
func (c Config) Export(ctx context.Context, img v1.Image) error {
	for _, n := range c.Names {
		if _, err := c.Store.Put(ctx, n, img); err != nil {
			return err
		}
	}
	return nil
}

// Put stores img under name, replacing what the name pointed to; an empty name stores
// it untagged. Blobs the content store lacks (layers of an image from elsewhere) are
// copied in first, then config and manifest, and the name is recorded last. An image
// that loses its last name this way stays in the store untagged, as with Docker.
func (s *Store) Put(ctx context.Context, name string, img v1.Image) (v1.Hash, error) {
	n := ""
	if name != "" {
		var err error
		if n, err = normalize(name); err != nil {
			return v1.Hash{}, err
		}
	}
	rec, err := s.storeBlobs(ctx, img)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("storing image %s: %w", orID(n, rec), err)
	}
	if n == "" {
		if s.named(ctx, rec.ManifestDigest) {
			return rec.ManifestDigest, nil // already listed under a name
		}
		if err := s.writeRecord(rec); err != nil {
			return v1.Hash{}, fmt.Errorf("storing image %s: %w", orID(n, rec), err)
		}
		return rec.ManifestDigest, nil
	}
	if err := s.setName(ctx, n, rec); err != nil {
		return v1.Hash{}, fmt.Errorf("storing image %s: %w", n, err)
	}
	return rec.ManifestDigest, nil
}

// orID is name, or the short id of rec for untagged images.
func orID(name string, rec Record) string {
	if name != "" {
		return name
	}
	return ShortID(rec.ConfigDigest)
}

// ShortID is Docker's short image id: the first 12 hex digits of the config digest.
func ShortID(id v1.Hash) string {
	if len(id.Hex) > 12 {
		return id.Hex[:12]
	}
	return id.Hex
}

// Get returns the image stored under name, its layers read lazily from the content
// store.
func (s *Store) Get(ctx context.Context, name string) (v1.Image, error) {
	n, err := normalize(name)
	if err != nil {
		return nil, err
	}
	rec, err := s.readRecord(s.recordPath(n))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("image %s: %w", n, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", n, err)
	}
	return s.Image(ctx, rec)
}

// Image returns the image rec describes, its layers read lazily from the content store.
func (s *Store) Image(ctx context.Context, rec Record) (v1.Image, error) {
	img, err := exporter.Stored(ctx, s.cs, rec.ManifestDigest)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", orID(rec.Name, rec), err)
	}
	return img, nil
}

// List returns every record, named ones sorted by name first, then the untagged
// ones by manifest digest.
func (s *Store) List(ctx context.Context) ([]Record, error) {
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	var out []Record
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		rec, err := s.readRecord(filepath.Join(s.root, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // removed since ReadDir
		}
		if err != nil {
			return nil, fmt.Errorf("listing images: %s: %w", e.Name(), err)
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.Name == "") != (b.Name == "") {
			return a.Name != ""
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.ManifestDigest.String() < b.ManifestDigest.String()
	})
	return out, nil
}

func normalize(name string) (string, error) {
	n, err := registry.Normalize(name)
	if err != nil {
		return "", err
	}
	if strings.Contains(n, "@") {
		return "", fmt.Errorf("image name %q: local images are named by tag, not digest", name)
	}
	return n, nil
}

// storeBlobs makes sure every blob of img is in the content store and describes it.
func (s *Store) storeBlobs(ctx context.Context, img v1.Image) (Record, error) {
	m, err := img.Manifest()
	if err != nil {
		return Record{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return Record{}, err
	}
	var size int64
	for _, l := range layers {
		if err := s.storeLayer(ctx, l); err != nil {
			return Record{}, err
		}
	}
	for _, d := range m.Layers {
		size += d.Size
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return Record{}, err
	}
	cfgDigest, err := s.cs.WriteBytes(ctx, rawCfg)
	if err != nil {
		return Record{}, fmt.Errorf("storing config: %w", err)
	}
	if cfgDigest.String() != m.Config.Digest.String() {
		return Record{}, fmt.Errorf("config digest %s, manifest says %s", cfgDigest, m.Config.Digest)
	}
	size += int64(len(rawCfg))
	rawManifest, err := img.RawManifest()
	if err != nil {
		return Record{}, err
	}
	md, err := s.cs.WriteBytes(ctx, rawManifest)
	if err != nil {
		return Record{}, fmt.Errorf("storing manifest: %w", err)
	}
	mh, err := v1.NewHash(md.String())
	if err != nil {
		return Record{}, err
	}
	created := time.Now().UTC()
	if cf, err := img.ConfigFile(); err == nil && !cf.Created.IsZero() {
		created = cf.Created.UTC()
	}
	return Record{ManifestDigest: mh, ConfigDigest: m.Config.Digest, Created: created, Size: size}, nil
}

// storeLayer copies l into the content store unless it is there (the usual case for
// built images, whose layers were written by the differ).
func (s *Store) storeLayer(ctx context.Context, l v1.Layer) error {
	h, err := l.Digest()
	if err != nil {
		return err
	}
	d := digest.Digest(h.String())
	if s.cs.Has(d) {
		return nil
	}
	size, err := l.Size()
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("reading layer %s: %w", h, err)
	}
	defer rc.Close()
	if _, err := s.cs.WriteBlob(ctx, rc, size, d); err != nil {
		return fmt.Errorf("storing layer %s: %w", h, err)
	}
	return nil
}

// recordPath is the file for name; hashing keeps any name a safe file name.
func (s *Store) recordPath(name string) string {
	sum := sha256.Sum256([]byte(name))
	return filepath.Join(s.root, hex.EncodeToString(sum[:])+".json")
}

// untaggedPath is the file of the untagged record of manifest m. The prefix keeps it
// apart from name records, whose names are bare hex.
func (s *Store) untaggedPath(m v1.Hash) string {
	return filepath.Join(s.root, untaggedPrefix+m.Algorithm+"-"+m.Hex+".json")
}

const untaggedPrefix = "untagged-"

// path is the file of rec.
func (s *Store) path(rec Record) string {
	if rec.Name == "" {
		return s.untaggedPath(rec.ManifestDigest)
	}
	return s.recordPath(rec.Name)
}

func (s *Store) readRecord(p string) (Record, error) {
	dt, err := os.ReadFile(p)
	if err != nil {
		return Record{}, err
	}
	var rec Record
	if err := json.Unmarshal(dt, &rec); err != nil {
		return Record{}, fmt.Errorf("decoding image record: %w", err)
	}
	return rec, nil
}

// writeRecord replaces the record of rec.Name atomically.
func (s *Store) writeRecord(rec Record) error {
	dt, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := cache.WriteFileAtomic(s.path(rec), dt); err != nil {
		return fmt.Errorf("writing image record: %w", err)
	}
	return nil
}
