package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
	"github.com/builderdev/builder/cache/gc"
	"github.com/builderdev/builder/cache/snapshot"
	"github.com/builderdev/builder/exporter"
	"github.com/builderdev/builder/exporter/imagestore"
	"github.com/builderdev/builder/internal/proc"
	"github.com/builderdev/builder/internal/registry"
	"github.com/builderdev/builder/worker/fscopy"
	"github.com/builderdev/builder/worker/runc"
)

// store is everything under --root.
type store struct {
	root      string
	content   *content.Store
	snapshots *snapshot.Snapshotter
	index     *cache.Index
	images    *imagestore.Store
	exec      *runc.Executor
}

func openStore(ctx context.Context, root string) (*store, error) {
	if root == "" {
		return nil, fmt.Errorf("empty --root")
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("creating store %s: %w", root, err)
	}
	// This process's lease on the store, held until it exits: prune waits for it.
	if _, err := gc.Shared(ctx, root); err != nil {
		return nil, err
	}
	s := &store{root: root}
	if s.content, err = content.Open(filepath.Join(root, "content")); err != nil {
		return nil, err
	}
	if s.snapshots, err = snapshot.New(filepath.Join(root, "snapshots")); err != nil {
		return nil, err
	}
	present := func(l cache.Layer) bool {
		return s.content.Has(l.Digest) && s.snapshots.Exists(cache.SnapshotID(l.DiffID))
	}
	if s.index, err = cache.OpenIndex(filepath.Join(root, "cache"), present); err != nil {
		return nil, err
	}
	if s.images, err = imagestore.Open(filepath.Join(root, "images"), s.content); err != nil {
		return nil, err
	}
	if s.exec, err = runc.NewExecutor(filepath.Join(root, "run")); err != nil {
		return nil, err
	}
	// Leftovers of killed builds: never reused, removed here. Builds still running on the
	// same root keep theirs (every cleaner checks the owning pid). Sandboxes go first:
	// a surviving sandbox process would keep using its snapshot's mounts.
	if err := s.exec.CleanStale(ctx); err != nil {
		return nil, fmt.Errorf("cleaning stale sandboxes: %w", err)
	}
	if err := s.snapshots.CleanStale(ctx); err != nil {
		return nil, fmt.Errorf("cleaning stale snapshots: %w", err)
	}
	if err := s.content.CleanIngests(); err != nil {
		return nil, fmt.Errorf("cleaning stale ingests: %w", err)
	}
	// Temp dirs of killed builds may hold secret files: remove them first thing.
	stale, err := proc.Stale(filepath.Join(root, "tmp"))
	if err != nil {
		return nil, err
	}
	for _, dir := range stale {
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("cleaning stale temp dir: %w", err)
		}
	}
	return s, nil
}

// tempDir makes this build's directory for short-lived files (secret files, downloads)
// under root/tmp: on the store's filesystem, and found and removed by the next build
// if this one is killed.
func (s *store) tempDir() (string, error) {
	return proc.TempDir(filepath.Join(s.root, "tmp"), "build-")
}

// statCacheEntries bounds the persistent stat cache: about 100 bytes an entry, so a few
// MB for a few large contexts.
const statCacheEntries = 200_000

// statCache returns the root's persistent stat cache of context files.
func (s *store) statCache() *fscopy.FileStatCache {
	return fscopy.OpenFileStatCache(filepath.Join(s.root, "statcache"), statCacheEntries)
}

// converter remembers layers converted to other compressions, under root/converted.
func (s *store) converter() (*exporter.Converter, error) {
	return exporter.NewConverter(s.content, filepath.Join(s.root, "converted"))
}

// cacheMounts is where RUN --mount=type=cache directories live between builds.
func (s *store) cacheMounts() string { return filepath.Join(s.root, "cache-mounts") }

func (s *store) registry(opts ...registry.Option) (*registry.Client, error) {
	return registry.New(s.content, filepath.Join(s.root, "resolved"), opts...)
}
