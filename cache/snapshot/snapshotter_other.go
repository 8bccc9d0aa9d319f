//go:build !linux

package snapshot

import (
	"context"
	"errors"
	"fmt"
)

// Snapshotter needs overlayfs; on other systems New fails with errors.ErrUnsupported.
type Snapshotter struct{}

// New returns errors.ErrUnsupported: snapshots need Linux overlayfs.
func New(root string) (*Snapshotter, error) {
	return nil, fmt.Errorf("creating snapshotter: %w", errors.ErrUnsupported)
}

// Dir is unsupported outside Linux.
func (s *Snapshotter) Dir(id string) string { return "" }

// Exists is unsupported outside Linux.
func (s *Snapshotter) Exists(id string) bool { return false }

// PrepareOpt configures Prepare.
type PrepareOpt func(*prepareOpts)

type prepareOpts struct{}

// WithInitLayer is unsupported outside Linux.
func WithInitLayer() PrepareOpt { return func(*prepareOpts) {} }

// Prepare is unsupported outside Linux.
func (s *Snapshotter) Prepare(ctx context.Context, parents []string, opts ...PrepareOpt) (*Active, error) {
	return nil, errors.ErrUnsupported
}

// Ingest is unsupported outside Linux.
func (s *Snapshotter) Ingest(ctx context.Context) (*Active, error) {
	return nil, errors.ErrUnsupported
}

// View is unsupported outside Linux.
func (s *Snapshotter) View(ctx context.Context, parents []string) (string, func() error, error) {
	return "", nil, errors.ErrUnsupported
}

// CleanStale is unsupported outside Linux.
func (s *Snapshotter) CleanStale(ctx context.Context) error { return errors.ErrUnsupported }

// Remove is not supported off Linux.
func (s *Snapshotter) Remove(ctx context.Context, id string) error { return errors.ErrUnsupported }

// Active is unsupported outside Linux.
type Active struct{}

// Root is unsupported outside Linux.
func (a *Active) Root() string { return "" }

// UpperDir is unsupported outside Linux.
func (a *Active) UpperDir() string { return "" }

// Unmount is unsupported outside Linux.
func (a *Active) Unmount(ctx context.Context) error { return errors.ErrUnsupported }

// Commit is unsupported outside Linux.
func (a *Active) Commit(ctx context.Context, id string) error { return errors.ErrUnsupported }

// Discard is unsupported outside Linux.
func (a *Active) Discard(ctx context.Context) error { return nil }
