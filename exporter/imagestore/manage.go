package imagestore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
)

// ErrAmbiguous is returned for an id prefix that matches several images.
var ErrAmbiguous = errors.New("ambiguous image id")

// ErrConflict is returned when removing an image by id would drop names in several
// repositories and the caller did not force it (Docker's rule).
var ErrConflict = errors.New("conflict")

// Match is the image a reference given by a user selects.
type Match struct {
	// Name is the normalised name when the reference was a name in the store, "" when
	// it was an image id.
	Name string
	// Record is the record of Name, or for an id the first of Records.
	Record Record
	// Records are all records of the image (same config digest): its names, sorted,
	// then its untagged records.
	Records []Record
}

// ID is the image id (the config digest).
func (m Match) ID() v1.Hash { return m.Record.ConfigDigest }

// Names are the image's names.
func (m Match) Names() []string {
	var out []string
	for _, r := range m.Records {
		if r.Name != "" {
			out = append(out, r.Name)
		}
	}
	return out
}

// Find resolves ref as Docker does: first as a name ("app", "app:v1", normalised),
// then as an image id or a unique prefix of one, with or without "sha256:".
func (s *Store) Find(ctx context.Context, ref string) (Match, error) {
	recs, err := s.List(ctx)
	if err != nil {
		return Match{}, err
	}
	if n, err := normalize(ref); err == nil {
		for _, r := range recs {
			if r.Name == n {
				return Match{Name: n, Record: r, Records: recordsOf(recs, r.ConfigDigest)}, nil
			}
		}
	}
	prefix := strings.TrimPrefix(ref, "sha256:")
	if !isHex(prefix) {
		return Match{}, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	var ids []v1.Hash
	for _, r := range recs {
		if strings.HasPrefix(r.ConfigDigest.Hex, prefix) && !containsHash(ids, r.ConfigDigest) {
			ids = append(ids, r.ConfigDigest)
		}
	}
	switch len(ids) {
	case 0:
		return Match{}, fmt.Errorf("%w: %s", ErrNotFound, ref)
	case 1:
		all := recordsOf(recs, ids[0])
		return Match{Record: all[0], Records: all}, nil
	}
	return Match{}, fmt.Errorf("%w: %s matches %d images", ErrAmbiguous, ref, len(ids))
}

func isHex(s string) bool {
	if s == "" || len(s) > 64 || strings.ToLower(s) != s {
		return false
	}
	if len(s)%2 == 1 {
		s += "0"
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func containsHash(hs []v1.Hash, h v1.Hash) bool {
	for _, x := range hs {
		if x == h {
			return true
		}
	}
	return false
}

// recordsOf returns the records of image id in List order (names first).
func recordsOf(recs []Record, id v1.Hash) []Record {
	var out []Record
	for _, r := range recs {
		if r.ConfigDigest == id {
			out = append(out, r)
		}
	}
	return out
}

// Tag gives the image of rec the additional name dst (a name moves if it pointed
// elsewhere; the image it leaves stays untagged if that was its last name).
func (s *Store) Tag(ctx context.Context, rec Record, dst string) error {
	n, err := normalize(dst)
	if err != nil {
		return err
	}
	if err := s.setName(ctx, n, rec); err != nil {
		return fmt.Errorf("tagging %s: %w", n, err)
	}
	return nil
}

// setName points name n at rec's image. The image's untagged record goes (it has a
// name now); the image n pointed to before becomes untagged unless another name
// keeps it.
func (s *Store) setName(ctx context.Context, n string, rec Record) error {
	old, oldErr := s.readRecord(s.recordPath(n))
	rec.Name = n
	if err := s.writeRecord(rec); err != nil {
		return err
	}
	if err := removeIfExists(s.untaggedPath(rec.ManifestDigest)); err != nil {
		return err
	}
	if oldErr != nil || old.ManifestDigest == rec.ManifestDigest || s.named(ctx, old.ManifestDigest) {
		return nil
	}
	old.Name = ""
	return s.writeRecord(old)
}

// named reports whether some name points at manifest m.
func (s *Store) named(ctx context.Context, m v1.Hash) bool {
	recs, err := s.List(ctx)
	if err != nil {
		return false
	}
	for _, r := range recs {
		if r.Name != "" && r.ManifestDigest == m {
			return true
		}
	}
	return false
}

func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Removal is what Remove did, in `docker rmi` terms.
type Removal struct {
	// Untagged are the names removed.
	Untagged []string
	// Deleted is the id of the image when its last record went, else zero.
	Deleted v1.Hash
	// Records are the records of a deleted image, for Unreferenced.
	Records []Record
}

// Remove removes ref as `docker rmi` does. A name is untagged; if it was the image's
// last name the image is deleted. An id deletes the image with all its names, but
// only with force when those names lie in more than one repository.
func (s *Store) Remove(ctx context.Context, ref string, force bool) (Removal, error) {
	m, err := s.Find(ctx, ref)
	if err != nil {
		return Removal{}, err
	}
	var out Removal
	if m.Name != "" {
		if err := s.removeRecord(m.Record); err != nil {
			return Removal{}, err
		}
		out.Untagged = []string{m.Name}
		for _, r := range m.Records {
			if r.Name != "" && r.Name != m.Name {
				return out, nil // other names keep the image
			}
		}
	} else {
		repos := map[string]bool{}
		for _, n := range m.Names() {
			repos[repository(n)] = true
		}
		if len(repos) > 1 && !force {
			return Removal{}, fmt.Errorf("%w: unable to delete %s (must be forced) - image is referenced in multiple repositories", ErrConflict, ShortID(m.ID()))
		}
	}
	for _, r := range m.Records {
		if r.Name == m.Name && m.Name != "" {
			continue // removed above
		}
		if err := s.removeRecord(r); err != nil {
			return out, err
		}
		if r.Name != "" {
			out.Untagged = append(out.Untagged, r.Name)
		}
	}
	out.Deleted = m.ID()
	out.Records = m.Records
	return out, nil
}

func (s *Store) removeRecord(r Record) error {
	if err := removeIfExists(s.path(r)); err != nil {
		return fmt.Errorf("removing image record of %s: %w", orID(r.Name, r), err)
	}
	return nil
}

// repository is a normalised name without its tag.
func repository(name string) string {
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name[:i]
	}
	return name
}

// Contents are the blobs one image consists of.
type Contents struct {
	Manifest digest.Digest
	Config   digest.Digest
	// Layers are the manifest's layers with the config's diff ids, base first.
	Layers []cache.Layer
}

// Blobs lists every blob digest of c.
func (c Contents) Blobs() []digest.Digest {
	out := []digest.Digest{c.Manifest, c.Config}
	for _, l := range c.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// Contents reads the manifest and config of rec and describes its blobs.
func (s *Store) Contents(ctx context.Context, rec Record) (Contents, error) {
	c := Contents{Manifest: digest.Digest(rec.ManifestDigest.String()), Config: digest.Digest(rec.ConfigDigest.String())}
	raw, err := s.cs.ReadAll(ctx, c.Manifest)
	if err != nil {
		return c, fmt.Errorf("reading manifest of %s: %w", orID(rec.Name, rec), err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return c, fmt.Errorf("decoding manifest of %s: %w", orID(rec.Name, rec), err)
	}
	rawCfg, err := s.cs.ReadAll(ctx, c.Config)
	if err != nil {
		return c, fmt.Errorf("reading config of %s: %w", orID(rec.Name, rec), err)
	}
	var cfg struct {
		RootFS struct {
			DiffIDs []digest.Digest `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(rawCfg, &cfg); err != nil {
		return c, fmt.Errorf("decoding config of %s: %w", orID(rec.Name, rec), err)
	}
	for i, l := range m.Layers {
		cl := cache.Layer{Digest: digest.Digest(l.Digest.String()), Size: l.Size, MediaType: string(l.MediaType)}
		if i < len(cfg.RootFS.DiffIDs) {
			cl.DiffID = cfg.RootFS.DiffIDs[i]
		}
		c.Layers = append(c.Layers, cl)
	}
	return c, nil
}

// Garbage is what removed images leave that no remaining image uses.
type Garbage struct {
	// Blobs are manifest, config and layer blob digests, sorted.
	Blobs []digest.Digest
	// DiffIDs are the diff ids (snapshot names) of the removed images' layers that no
	// remaining image has, sorted.
	DiffIDs []digest.Digest
}

// Unreferenced returns the blobs and layers of the removed records that no record left
// in the store uses. The build cache may still use them: the caller checks that before
// deleting anything. Records whose manifest is already gone contribute what they name.
func (s *Store) Unreferenced(ctx context.Context, removed []Record) (Garbage, error) {
	cand := map[digest.Digest]bool{}
	candDiff := map[digest.Digest]bool{}
	for _, r := range removed {
		c, err := s.Contents(ctx, r)
		cand[c.Manifest], cand[c.Config] = true, true
		if err != nil {
			continue
		}
		for _, l := range c.Layers {
			cand[l.Digest] = true
			if l.DiffID != "" {
				candDiff[l.DiffID] = true
			}
		}
	}
	recs, err := s.List(ctx)
	if err != nil {
		return Garbage{}, err
	}
	for _, r := range recs {
		c, err := s.Contents(ctx, r)
		if err != nil {
			// An unreadable image keeps what it names, to be safe.
			delete(cand, c.Manifest)
			delete(cand, c.Config)
			continue
		}
		for _, d := range c.Blobs() {
			delete(cand, d)
		}
		for _, l := range c.Layers {
			delete(candDiff, l.DiffID)
		}
	}
	var g Garbage
	for d := range cand {
		g.Blobs = append(g.Blobs, d)
	}
	for d := range candDiff {
		g.DiffIDs = append(g.DiffIDs, d)
	}
	sort.Slice(g.Blobs, func(i, j int) bool { return g.Blobs[i] < g.Blobs[j] })
	sort.Slice(g.DiffIDs, func(i, j int) bool { return g.DiffIDs[i] < g.DiffIDs[j] })
	return g, nil
}
