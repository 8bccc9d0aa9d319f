package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/builderdev/builder/cache"
)

// Resolved is one platform's image as found in a registry (or remembered from one).
type Resolved struct {
	// Ref is the normalised reference pinned to the platform's manifest digest,
	// e.g. docker.io/library/busybox:latest@sha256:...
	Ref            string
	Manifest       v1.Manifest
	ManifestDigest v1.Hash
	// Config is the raw image config JSON.
	Config []byte
}

// Resolve returns the image ref names for the client's platform. The manifest (and
// index, if any) and config blobs end up in the content store. A tag resolved before
// on this root, and any digest whose blobs are stored, is answered without the
// network unless WithAlwaysPull was given.
func (c *Client) Resolve(ctx context.Context, ref string) (*Resolved, error) {
	return c.ResolvePlatform(ctx, ref, c.o.platform)
}

// ResolvePlatform is Resolve for platform pl instead of the client's: a
// multi-platform build resolves each base image once per platform it is built for, so
// each gets its own manifest digest. A reference pinned to an image manifest (not an
// index) is that image whatever pl says.
func (c *Client) ResolvePlatform(ctx context.Context, ref string, pl v1.Platform) (*Resolved, error) {
	if pl.OS == "" || pl.Architecture == "" {
		return nil, fmt.Errorf("resolving %s: platform %q: os and architecture are required", ref, pl.String())
	}
	p, err := parse(ref)
	if err != nil {
		return nil, err
	}
	known := p.digest
	if known == "" && !c.o.alwaysPull {
		known = c.remembered(p)
	}
	if known != "" {
		// Any miss (blob gone, platform never pulled) just means asking the registry.
		if r, err := c.resolveLocal(ctx, p, known, pl); err == nil {
			c.rememberLayerSources(p, r.Manifest)
			return r, nil
		}
	}
	top, err := c.pull(ctx, p, pl)
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", p, err)
	}
	if p.digest == "" {
		if err := c.remember(p, top); err != nil {
			return nil, fmt.Errorf("pulling %s: %w", p, err)
		}
	}
	r, err := c.resolveLocal(ctx, p, top, pl)
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", p, err)
	}
	c.rememberLayerSources(p, r.Manifest)
	return r, nil
}

// Pull fetches what ref names into the content store: the manifest (the platform's
// image of an index), the config and every layer. Unlike Resolve it always asks the
// registry about a tag; a digest whose blobs are all stored needs no network.
func (c *Client) Pull(ctx context.Context, ref string) (*Resolved, error) {
	p, err := parse(ref)
	if err != nil {
		return nil, err
	}
	var r *Resolved
	if p.digest != "" {
		r, _ = c.resolveLocal(ctx, p, p.digest, c.o.platform)
	}
	if r == nil {
		top, err := c.pull(ctx, p, c.o.platform)
		if err != nil {
			return nil, fmt.Errorf("pulling %s: %w", p, err)
		}
		if p.digest == "" {
			if err := c.remember(p, top); err != nil {
				return nil, fmt.Errorf("pulling %s: %w", p, err)
			}
		}
		if r, err = c.resolveLocal(ctx, p, top, c.o.platform); err != nil {
			return nil, fmt.Errorf("pulling %s: %w", p, err)
		}
	}
	repo, err := c.repository(p)
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", p, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(pullJobs)
	for _, l := range r.Manifest.Layers {
		g.Go(func() error {
			if err := c.fetchBlob(gctx, repo, l); err != nil {
				return fmt.Errorf("pulling %s: layer %s: %w", p, l.Digest, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return r, nil
}

// pullJobs is how many layers Pull downloads at once.
const pullJobs = 4

// FetchLayer makes sure the compressed blob desc of an image in ref's repository is in
// the content store, downloading and verifying it if needed.
func (c *Client) FetchLayer(ctx context.Context, ref string, desc v1.Descriptor) error {
	p, err := parse(ref)
	if err != nil {
		return err
	}
	d, err := digest.Parse(desc.Digest.String())
	if err != nil {
		return fmt.Errorf("pulling layer of %s: %w", p, err)
	}
	if c.cs.Has(d) {
		return nil
	}
	repo, err := c.repository(p)
	if err != nil {
		return fmt.Errorf("pulling layer %s of %s: %w", d, p, err)
	}
	if err := c.fetchBlob(ctx, repo, desc); err != nil {
		return fmt.Errorf("pulling layer %s of %s: %w", d, p, err)
	}
	return nil
}

// pull fetches p's manifest (and, for an index, platform pl's manifest) and config
// into the content store and returns the digest p names: an index or a manifest.
func (c *Client) pull(ctx context.Context, p parsed, pl v1.Platform) (digest.Digest, error) {
	gref, err := c.reference(p)
	if err != nil {
		return "", err
	}
	desc, err := c.puller.Get(ctx, gref)
	if err != nil {
		return "", explain(p.host, err)
	}
	top, err := c.storeManifest(ctx, desc.Manifest, desc.Digest)
	if err != nil {
		return "", err
	}
	raw := desc.Manifest
	kind, err := probe(raw)
	if err != nil {
		return "", err
	}
	if kind == kindIndex {
		child, err := selectPlatform(raw, pl)
		if err != nil {
			return "", err
		}
		cdesc, err := c.puller.Get(ctx, gref.Context().Digest(child.Digest.String()))
		if err != nil {
			return "", explain(p.host, err)
		}
		if _, err := c.storeManifest(ctx, cdesc.Manifest, child.Digest); err != nil {
			return "", err
		}
		raw = cdesc.Manifest
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", fmt.Errorf("decoding manifest: %w", err)
	}
	if err := c.fetchBlob(ctx, gref.Context(), m.Config); err != nil {
		return "", fmt.Errorf("pulling config %s: %w", m.Config.Digest, err)
	}
	return top, nil
}

// storeManifest puts raw into the content store and checks it is what want names.
func (c *Client) storeManifest(ctx context.Context, raw []byte, want v1.Hash) (digest.Digest, error) {
	got, err := c.cs.WriteBytes(ctx, raw)
	if err != nil {
		return "", fmt.Errorf("storing manifest: %w", err)
	}
	if got.String() != want.String() {
		return "", fmt.Errorf("manifest digest %s, expected %s", got, want)
	}
	return got, nil
}

// fetchBlob downloads blob desc of repo into the content store (verifying size and
// digest) unless it is there already, and remembers repo as a place that holds it.
// A download that breaks off (connection reset or closed mid-body) starts again from
// the beginning; the content store keeps an unfinished or unverified blob in an
// ingest file and drops it, so a failure never leaves a partial blob behind.
func (c *Client) fetchBlob(ctx context.Context, repo name.Repository, desc v1.Descriptor) error {
	d, err := digest.Parse(desc.Digest.String())
	if err != nil {
		return err
	}
	if c.cs.Has(d) {
		return nil
	}
	err = c.withRetry(ctx, func() error {
		l, err := c.puller.Layer(ctx, repo.Digest(d.String()))
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = c.cs.WriteBlob(ctx, rc, desc.Size, d)
		return err
	})
	if err != nil {
		return explain(repo.RegistryStr(), err)
	}
	// Only a hint for cross-repository mounts on push.
	_ = c.rememberSource(repo.Name(), desc.Digest)
	return nil
}

// resolveLocal answers from the content store alone, picking platform pl of an index.
func (c *Client) resolveLocal(ctx context.Context, p parsed, d digest.Digest, pl v1.Platform) (*Resolved, error) {
	raw, err := c.cs.ReadAll(ctx, d)
	if err != nil {
		return nil, err
	}
	kind, err := probe(raw)
	if err != nil {
		return nil, err
	}
	if kind == kindIndex {
		child, err := selectPlatform(raw, pl)
		if err != nil {
			return nil, err
		}
		if d, err = digest.Parse(child.Digest.String()); err != nil {
			return nil, err
		}
		if raw, err = c.cs.ReadAll(ctx, d); err != nil {
			return nil, err
		}
		if kind, err = probe(raw); err != nil {
			return nil, err
		}
		if kind != kindManifest {
			return nil, fmt.Errorf("platform %s of the index is not an image manifest", pl.String())
		}
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decoding manifest %s: %w", d, err)
	}
	cd, err := digest.Parse(m.Config.Digest.String())
	if err != nil {
		return nil, fmt.Errorf("manifest %s: config digest: %w", d, err)
	}
	cfg, err := c.cs.ReadAll(ctx, cd)
	if err != nil {
		return nil, err
	}
	h, err := v1.NewHash(d.String())
	if err != nil {
		return nil, err
	}
	return &Resolved{Ref: p.pinned(d), Manifest: m, ManifestDigest: h, Config: cfg}, nil
}

type manifestKind int

const (
	kindManifest manifestKind = iota
	kindIndex
)

// probe tells an index from an image manifest. OCI makes mediaType optional, so the
// shape decides when it is absent.
func probe(raw []byte) (manifestKind, error) {
	var m struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     types.MediaType `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
		Config        json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return 0, fmt.Errorf("decoding manifest: %w", err)
	}
	switch {
	case m.SchemaVersion == 1:
		return 0, errors.New("schema 1 manifests are not supported; push the image again with a current client")
	case m.MediaType.IsIndex(), m.MediaType == "" && m.Manifests != nil:
		return kindIndex, nil
	case m.MediaType.IsImage(), m.MediaType == "" && m.Config != nil:
		return kindManifest, nil
	}
	return 0, fmt.Errorf("unsupported manifest media type %q", m.MediaType)
}

// selectPlatform picks want's entry from the index raw (see SelectPlatform).
func selectPlatform(raw []byte, want v1.Platform) (v1.Descriptor, error) {
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		return v1.Descriptor{}, fmt.Errorf("decoding index: %w", err)
	}
	return SelectPlatform(idx.Manifests, want)
}

// SelectPlatform returns the entry of an index for want: the first image whose
// platform satisfies it, or else the only entry when it names no platform (buildx
// wraps a multi-platform image's index in a one-entry index, and single-image layouts
// often omit the platform).
func SelectPlatform(ms []v1.Descriptor, want v1.Platform) (v1.Descriptor, error) {
	var have []string
	for _, m := range ms {
		if m.Platform == nil {
			continue
		}
		if m.Platform.Satisfies(want) && m.MediaType.IsImage() {
			return m, nil
		}
		// Attestation manifests say unknown/unknown; they are not choices.
		if m.Platform.OS != "unknown" {
			have = append(have, m.Platform.String())
		}
	}
	if len(ms) == 1 && ms[0].Platform == nil {
		return ms[0], nil
	}
	return v1.Descriptor{}, fmt.Errorf("no image for platform %s (the index has %s)", want.String(), orNone(have))
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// tagRecord is what a remembered tag resolution file holds.
type tagRecord struct {
	Ref      string        `json:"ref"`
	Digest   digest.Digest `json:"digest"`
	Resolved time.Time     `json:"resolved"`
}

func (c *Client) tagFile(p parsed) string {
	sum := sha256.Sum256([]byte(p.String()))
	return filepath.Join(c.stateDir, hex.EncodeToString(sum[:])+".json")
}

// remembered is the digest p resolved to last time, or "" if unknown.
func (c *Client) remembered(p parsed) digest.Digest {
	dt, err := os.ReadFile(c.tagFile(p))
	if err != nil {
		return ""
	}
	var rec tagRecord
	if json.Unmarshal(dt, &rec) != nil || rec.Ref != p.String() || rec.Digest.Validate() != nil {
		return ""
	}
	return rec.Digest
}

// remember records p → d, replacing the file atomically so concurrent builds on the
// same root see either the old resolution or the new one.
func (c *Client) remember(p parsed, d digest.Digest) error {
	dt, err := json.Marshal(tagRecord{Ref: p.String(), Digest: d, Resolved: time.Now().UTC()})
	if err != nil {
		return err
	}
	if err := cache.WriteFileAtomic(c.tagFile(p), dt); err != nil {
		return fmt.Errorf("remembering resolution: %w", err)
	}
	return nil
}
