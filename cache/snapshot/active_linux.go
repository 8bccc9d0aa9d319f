//go:build linux

package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Active is a snapshot being written: an upper dir, and for prepared snapshots an
// overlay mounted over its parents. It ends with Commit or Discard; Discard after
// Commit is a no-op, so `defer a.Discard(ctx)` is always safe.
type Active struct {
	s *Snapshotter
	// dir is this snapshot's private "<pid>-<random>" dir holding everything below.
	dir   string
	upper string
	work  string // empty for Ingest
	root  string // the mount point, or upper for Ingest

	mu      sync.Mutex
	mounted bool
	done    bool // committed or discarded
}

// Root returns the absolute path of the merged filesystem (the upper dir for an
// ingest snapshot).
func (a *Active) Root() string { return a.root }

// UpperDir returns the dir that collects this snapshot's changes in overlay form.
func (a *Active) UpperDir() string { return a.upper }

// Unmount unmounts the merged view; the upper dir stays. It is idempotent.
func (a *Active) Unmount(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.unmountLocked()
}

func (a *Active) unmountLocked() error {
	if !a.mounted {
		return nil
	}
	if err := unmount(a.root); err != nil {
		return err
	}
	a.mounted = false
	return nil
}

// Commit unmounts the snapshot if needed and moves its upper dir into place as
// snapshot id, atomically. If id is already committed (another build produced the
// same layer) this snapshot is discarded and Commit succeeds.
func (a *Active) Commit(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done {
		return fmt.Errorf("committing snapshot %s: snapshot already committed or discarded", id)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := a.unmountLocked(); err != nil {
		return fmt.Errorf("committing snapshot %s: %w", id, err)
	}
	// RENAME_NOREPLACE: a plain rename would silently replace an existing empty
	// committed dir that other overlays may be using as a lower dir right now.
	err := unix.Renameat2(unix.AT_FDCWD, a.upper, unix.AT_FDCWD, a.s.Dir(id), unix.RENAME_NOREPLACE)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("committing snapshot %s: %w", id, err)
	}
	a.done = true
	if err := os.RemoveAll(a.dir); err != nil {
		return fmt.Errorf("committing snapshot %s: removing work dir: %w", id, err)
	}
	return nil
}

// Discard unmounts the snapshot and removes all of it. It is a no-op after Commit or
// a previous Discard.
func (a *Active) Discard(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done {
		return nil
	}
	if err := a.unmountLocked(); err != nil {
		// Never RemoveAll below a mount that is still attached.
		return fmt.Errorf("discarding snapshot: %w", err)
	}
	a.done = true
	if err := os.RemoveAll(a.dir); err != nil {
		return fmt.Errorf("discarding snapshot: %w", err)
	}
	return nil
}
