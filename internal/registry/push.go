package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/builderdev/builder/cache"
)

// sourcesDir (under the state directory) holds one small record per blob digest: the
// repositories known to hold that blob, because it was pulled from or pushed to them.
// Push offers them to the registry as cross-repository mounts.
const sourcesDir = "blobs"

// maxSources bounds a blob's record; the newest repositories are kept.
const maxSources = 8

// Push writes img to ref. Blobs the repository already has are skipped (one HEAD
// each); blobs known to be in another repository of the same registry are mounted
// from there instead of uploaded; the rest are uploaded in parallel.
func (c *Client) Push(ctx context.Context, ref string, img v1.Image) error {
	p, err := parse(ref)
	if err != nil {
		return err
	}
	if err := c.push(ctx, p, &mountImage{Image: img, c: c, target: p}); err != nil {
		return fmt.Errorf("pushing %s: %w", p, err)
	}
	c.rememberImageSources(p, img)
	return nil
}

// PushIndex writes a multi-platform index and its images to ref, the way Push writes
// one image.
func (c *Client) PushIndex(ctx context.Context, ref string, idx v1.ImageIndex) error {
	p, err := parse(ref)
	if err != nil {
		return err
	}
	if err := c.push(ctx, p, &mountIndex{idx: idx, c: c, target: p}); err != nil {
		return fmt.Errorf("pushing %s: %w", p, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil // pushed fine; the records are only hints
	}
	for _, d := range m.Manifests {
		if img, err := idx.Image(d.Digest); err == nil && d.MediaType.IsImage() {
			c.rememberImageSources(p, img)
		}
	}
	return nil
}

func (c *Client) push(ctx context.Context, p parsed, t remote.Taggable) error {
	gref, err := c.reference(p)
	if err != nil {
		return err
	}
	return explain(p.host, c.pusher.Push(ctx, gref, t))
}

// mountImage is an image whose layers (and config) say which repository of the target
// registry they can be mounted from, as go-containerregistry's writer expects.
type mountImage struct {
	v1.Image
	c      *Client
	target parsed
}

func (m *mountImage) Layers() ([]v1.Layer, error) {
	ls, err := m.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = m.mountable(l)
	}
	return out, nil
}

func (m *mountImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := m.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return m.mountable(l), nil
}

// ConfigLayer lets the config blob be mounted too.
func (m *mountImage) ConfigLayer() (v1.Layer, error) {
	l, err := partial.ConfigLayer(m.Image)
	if err != nil {
		return nil, err
	}
	return m.mountable(l), nil
}

// mountable wraps l in a remote.MountableLayer when a repository of the target's
// registry other than the target is known to hold it.
func (m *mountImage) mountable(l v1.Layer) v1.Layer {
	h, err := l.Digest()
	if err != nil {
		return l
	}
	for _, src := range m.c.sources(h) {
		sp, err := parse(src + ":latest")
		if err != nil || sp.host != m.target.host || sp.repo == m.target.repo {
			continue
		}
		repo, err := m.c.repository(sp)
		if err != nil {
			continue
		}
		return &remote.MountableLayer{Layer: l, Reference: repo.Digest(h.String())}
	}
	return l
}

// mountIndex hands out its images as mountImages.
type mountIndex struct {
	idx    v1.ImageIndex
	c      *Client
	target parsed
}

func (m *mountIndex) MediaType() (types.MediaType, error)       { return m.idx.MediaType() }
func (m *mountIndex) Digest() (v1.Hash, error)                  { return m.idx.Digest() }
func (m *mountIndex) Size() (int64, error)                      { return m.idx.Size() }
func (m *mountIndex) IndexManifest() (*v1.IndexManifest, error) { return m.idx.IndexManifest() }
func (m *mountIndex) RawManifest() ([]byte, error)              { return m.idx.RawManifest() }

func (m *mountIndex) Image(h v1.Hash) (v1.Image, error) {
	img, err := m.idx.Image(h)
	if err != nil {
		return nil, err
	}
	return &mountImage{Image: img, c: m.c, target: m.target}, nil
}

func (m *mountIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	idx, err := m.idx.ImageIndex(h)
	if err != nil {
		return nil, err
	}
	return &mountIndex{idx: idx, c: m.c, target: m.target}, nil
}

// Manifests is what go-containerregistry's writer walks: the index's children, images
// and indexes wrapped to offer mounts, anything else (blobs) as it is.
func (m *mountIndex) Manifests() ([]partial.Describable, error) {
	children, err := partial.Manifests(m.idx)
	if err != nil {
		return nil, err
	}
	for i, ch := range children {
		switch ch := ch.(type) {
		case v1.Image:
			children[i] = &mountImage{Image: ch, c: m.c, target: m.target}
		case v1.ImageIndex:
			children[i] = &mountIndex{idx: ch, c: m.c, target: m.target}
		}
	}
	return children, nil
}

// sourceRecord is what a blob's record file holds.
type sourceRecord struct {
	Repos []string `json:"repos"`
}

func (c *Client) sourceFile(h v1.Hash) string {
	return filepath.Join(c.stateDir, sourcesDir, h.Algorithm+"-"+h.Hex+".json")
}

// sources lists the repositories (host/repo) known to hold blob h, newest first.
func (c *Client) sources(h v1.Hash) []string {
	dt, err := os.ReadFile(c.sourceFile(h))
	if err != nil {
		return nil
	}
	var rec sourceRecord
	if json.Unmarshal(dt, &rec) != nil {
		return nil
	}
	return rec.Repos
}

// rememberSource records that repository repo (host/repo) holds blob h. The record is
// a hint: a lost update between two processes only costs an upload later, so it is a
// plain read-modify-replace.
func (c *Client) rememberSource(repo string, h v1.Hash) error {
	repos := c.sources(h)
	if len(repos) > 0 && repos[0] == repo {
		return nil
	}
	repos = slices.DeleteFunc(repos, func(r string) bool { return r == repo })
	repos = append([]string{repo}, repos...)
	if len(repos) > maxSources {
		repos = repos[:maxSources]
	}
	dt, err := json.Marshal(sourceRecord{Repos: repos})
	if err != nil {
		return err
	}
	if err := cache.WriteFileAtomic(c.sourceFile(h), dt); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // state directory removed under us; nothing to remember in
		}
		return fmt.Errorf("remembering blob source: %w", err)
	}
	return nil
}

// rememberImageSources records that p's repository now holds img's blobs. Failures
// are ignored: the image was pushed, the record only speeds up later pushes.
func (c *Client) rememberImageSources(p parsed, img v1.Image) {
	m, err := img.Manifest()
	if err != nil {
		return
	}
	_ = c.rememberSource(p.name(), m.Config.Digest)
	for _, l := range m.Layers {
		_ = c.rememberSource(p.name(), l.Digest)
	}
}

var (
	_ v1.Image      = (*mountImage)(nil)
	_ v1.ImageIndex = (*mountIndex)(nil)
)
