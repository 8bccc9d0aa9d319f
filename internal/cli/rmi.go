package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/gc"
	"github.com/builderdev/builder/exporter/imagestore"
)

func newRmiCmd(g *globalOptions) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rmi [-f] IMAGE [IMAGE...]",
		Short: "Remove images from the store",
		Long: `Remove images from the store, as docker rmi does. A name is untagged; when it was
the image's last name the image is deleted. An image ID deletes the image with all
its names, but only with -f when they lie in several repositories.

The blobs and extracted layers of a deleted image are removed unless another image or
the build cache still uses them; while another builder process uses the root they are
left for builder prune.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			st, err := openStore(ctx, g.root)
			if err != nil {
				return err
			}
			var errs []error
			for _, ref := range args {
				if err := st.removeImage(ctx, cmd.OutOrStdout(), ref, force); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove an image by ID even when several repositories name it")
	return cmd
}

// removeImage removes ref and, when that deleted an image, its garbage, printing
// docker's Untagged:/Deleted: lines.
func (s *store) removeImage(ctx context.Context, w io.Writer, ref string, force bool) error {
	rm, err := s.images.Remove(ctx, ref, force)
	for _, n := range rm.Untagged {
		fmt.Fprintf(w, "Untagged: %s\n", familiar(n))
	}
	if err != nil {
		return err
	}
	if rm.Deleted == (v1.Hash{}) {
		return nil
	}
	if err := s.collectGarbage(ctx, rm.Records); err != nil {
		return fmt.Errorf("removing %s: %w", ref, err)
	}
	fmt.Fprintf(w, "Deleted: %s\n", rm.Deleted)
	return nil
}

// collectGarbage deletes the blobs and snapshots of removed image records that nothing
// else uses: no image in the store, no build cache record, no remembered registry
// resolution. It needs the gc lock exclusively, as prune does, since a running build
// may be using those layers without having recorded them yet; while builds run it
// leaves the garbage to the next prune or automatic collection.
func (s *store) collectGarbage(ctx context.Context, removed []imagestore.Record) error {
	lock, err := gc.Exclusive(ctx, s.root, false)
	if errors.Is(err, gc.ErrBusy) {
		return nil
	}
	if err != nil {
		return err
	}
	defer lock.Release()
	g, err := s.images.Unreferenced(ctx, removed)
	if err != nil {
		return err
	}
	if len(g.Blobs) == 0 && len(g.DiffIDs) == 0 {
		return nil
	}
	used, err := s.cacheUses(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range g.Blobs {
		if used[d] {
			continue
		}
		if err := s.content.Delete(d); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range g.DiffIDs {
		if used[d] {
			continue
		}
		if err := s.snapshots.Remove(ctx, cache.SnapshotID(d)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cacheUses returns the blob digests and diff ids the build cache and the remembered
// registry resolutions (base images) use.
func (s *store) cacheUses(ctx context.Context) (map[digest.Digest]bool, error) {
	used := map[digest.Digest]bool{}
	recs, err := s.index.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		for _, l := range r.Ref.Layers {
			used[l.Digest], used[l.DiffID] = true, true
		}
	}
	res, err := s.resolutionUses(ctx)
	if err != nil {
		return nil, err
	}
	for d := range res {
		used[d] = true
	}
	return used, nil
}

// resolutionUses returns the blobs and diff ids of the base images the registry client
// remembers resolving: a cached build needs them without the network.
func (s *store) resolutionUses(ctx context.Context) (map[digest.Digest]bool, error) {
	used := map[digest.Digest]bool{}
	ents, err := os.ReadDir(filepath.Join(s.root, "resolved"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("listing registry resolutions: %w", err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		dt, err := os.ReadFile(filepath.Join(s.root, "resolved", e.Name()))
		if err != nil {
			continue // replaced or removed meanwhile
		}
		var rec struct {
			Digest digest.Digest `json:"digest"`
		}
		if json.Unmarshal(dt, &rec) != nil || rec.Digest.Validate() != nil {
			continue
		}
		s.markManifest(ctx, rec.Digest, used, 0)
	}
	return used, nil
}

// markManifest marks manifest or index d and everything it names as used. Missing or
// unreadable blobs end the walk: there is nothing below them to keep.
func (s *store) markManifest(ctx context.Context, d digest.Digest, used map[digest.Digest]bool, depth int) {
	used[d] = true
	if depth > 4 {
		return
	}
	raw, err := s.content.ReadAll(ctx, d)
	if err != nil {
		return
	}
	var m struct {
		Manifests []v1.Descriptor `json:"manifests"`
		Config    *v1.Descriptor  `json:"config"`
		Layers    []v1.Descriptor `json:"layers"`
	}
	if json.Unmarshal(raw, &m) != nil {
		return
	}
	for _, c := range m.Manifests {
		s.markManifest(ctx, digest.Digest(c.Digest.String()), used, depth+1)
	}
	if m.Config != nil {
		cd := digest.Digest(m.Config.Digest.String())
		used[cd] = true
		if raw, err := s.content.ReadAll(ctx, cd); err == nil {
			var cfg struct {
				RootFS struct {
					DiffIDs []digest.Digest `json:"diff_ids"`
				} `json:"rootfs"`
			}
			if json.Unmarshal(raw, &cfg) == nil {
				for _, id := range cfg.RootFS.DiffIDs {
					used[id] = true
				}
			}
		}
	}
	for _, l := range m.Layers {
		used[digest.Digest(l.Digest.String())] = true
	}
}
