package ops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/builderdev/builder/llb"
)

// Cache mount directories live under Deps.CacheMounts as
//
//	<sha256 of the key>/create.lock   held while an instance is created
//	<sha256 of the key>/<n>.lock      held (shared or exclusive) while instance n is in use
//	<sha256 of the key>/<n>/          instance n's contents, bind-mounted into the sandbox
//
// Every lock is a flock(2) on its own open file, so builder processes sharing one root
// and goroutines of one process coordinate the same way, and a killed process's locks go
// with it.

// cacheDir is one cache mount instance in use; release ends the use.
type cacheDir struct {
	path string
	lock *os.File
}

func (c *cacheDir) release() error { return c.lock.Close() }

// cacheKey names a cache mount: its id and, when seeded from another result, that
// result's key, so a changed seed starts a new cache instead of showing a stale copy.
func cacheKey(id string, seed digest.Digest) string {
	if seed == "" {
		return digest.FromString(id).Encoded()
	}
	return digest.FromString(id + "\x00" + seed.String()).Encoded()
}

// acquireCacheDir returns an instance of the cache named key under root, locked for the
// sharing mode: shared uses instance 0 with other shared users, locked waits for sole use
// of instance 0, private takes the first instance nobody uses. create fills a missing
// instance (a new empty dir) before anyone can see it.
func acquireCacheDir(ctx context.Context, root, key, sharing string, create func(dir string) error) (*cacheDir, error) {
	if root == "" {
		return nil, errors.New("no cache mount directory configured")
	}
	base := filepath.Join(root, key)
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, fmt.Errorf("creating cache directory: %w", err)
	}
	var (
		n    int
		lock *os.File
		err  error
	)
	switch sharing {
	case llb.SharingShared, "":
		lock, err = lockFile(ctx, filepath.Join(base, "0.lock"), unix.LOCK_SH, true)
	case llb.SharingLocked:
		lock, err = lockFile(ctx, filepath.Join(base, "0.lock"), unix.LOCK_EX, true)
	case llb.SharingPrivate:
		for ; ; n++ {
			lock, err = lockFile(ctx, filepath.Join(base, strconv.Itoa(n)+".lock"), unix.LOCK_EX, false)
			if !errors.Is(err, unix.EWOULDBLOCK) {
				break
			}
		}
	default:
		return nil, fmt.Errorf("unknown cache sharing mode %q", sharing)
	}
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(base, strconv.Itoa(n))
	if err := ensureCacheInstance(ctx, base, dir, create); err != nil {
		lock.Close()
		return nil, err
	}
	return &cacheDir{path: dir, lock: lock}, nil
}

// ensureCacheInstance creates dir through create when it does not exist yet. Creation
// happens in a temporary dir renamed into place under create.lock, so a reader never sees
// a half-seeded cache and leftovers of a killed creator are recognisable.
func ensureCacheInstance(ctx context.Context, base, dir string, create func(string) error) error {
	if _, err := os.Lstat(dir); err == nil {
		return nil
	}
	cl, err := lockFile(ctx, filepath.Join(base, "create.lock"), unix.LOCK_EX, true)
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := os.Lstat(dir); err == nil {
		return nil
	}
	// Holding create.lock, any other ".new-" dir belongs to a creator that died.
	if entries, err := os.ReadDir(base); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".new-") {
				os.RemoveAll(filepath.Join(base, e.Name()))
			}
		}
	}
	tmp, err := os.MkdirTemp(base, ".new-")
	if err != nil {
		return fmt.Errorf("creating cache directory: %w", err)
	}
	if err := create(tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("creating cache directory: %w", err)
	}
	return nil
}

// lockFile opens (creating) path and flocks it with how (LOCK_SH or LOCK_EX). With wait
// it polls until the lock is free or ctx ends: a blocking flock could not be cancelled.
// Without wait a held lock is an error wrapping EWOULDBLOCK.
func lockFile(ctx context.Context, path string, how int, wait bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock: %w", err)
	}
	delay := 2 * time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || !wait {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", filepath.Base(path), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", filepath.Base(path), context.Cause(ctx))
		case <-time.After(delay):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// ErrCacheMountBusy is returned by ReadCacheMount when a build uses the cache mount
// alone (sharing=locked or private) right now.
var ErrCacheMountBusy = errors.New("cache mount is in exclusive use")

// CacheMountKey is the directory name under Deps.CacheMounts of the cache mount id,
// seeded from the result with key seed ("" for none): the name a RUN step uses.
func CacheMountKey(id string, seed digest.Digest) string { return cacheKey(id, seed) }

// validCacheMountKey reports whether key can be a directory name made by cacheKey:
// keys also come from imported caches, which must not name paths outside the root.
func validCacheMountKey(key string) bool {
	return digest.Canonical.Validate(key) == nil
}

// ReadCacheMount calls read with instance 0 of the cache mount dirKey under root (the
// instance shared and locked users see) while holding its lock shared, so no exclusive
// user changes it meanwhile; a shared user may, as in any build. ok is false when the
// instance does not exist. It does not wait for an exclusive user: that is
// ErrCacheMountBusy.
func ReadCacheMount(ctx context.Context, root, dirKey string, read func(dir string) error) (ok bool, err error) {
	if !validCacheMountKey(dirKey) {
		return false, fmt.Errorf("invalid cache mount key %q", dirKey)
	}
	base := filepath.Join(root, dirKey)
	dir := filepath.Join(base, "0")
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	lock, err := lockFile(ctx, filepath.Join(base, "0.lock"), unix.LOCK_SH, false)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return false, ErrCacheMountBusy
	}
	if err != nil {
		return false, err
	}
	defer lock.Close()
	if err := read(dir); err != nil {
		return false, err
	}
	return true, nil
}

// RestoreCacheMount creates instance 0 of the cache mount dirKey under root through
// fill, which gets an empty temporary directory renamed into place once fill returns;
// a cache that exists already is never touched (created is false, fill not called).
func RestoreCacheMount(ctx context.Context, root, dirKey string, fill func(dir string) error) (created bool, err error) {
	if !validCacheMountKey(dirKey) {
		return false, fmt.Errorf("invalid cache mount key %q", dirKey)
	}
	base := filepath.Join(root, dirKey)
	if err := os.MkdirAll(base, 0o700); err != nil {
		return false, fmt.Errorf("creating cache directory: %w", err)
	}
	err = ensureCacheInstance(ctx, base, filepath.Join(base, "0"), func(dir string) error {
		created = true
		return fill(dir)
	})
	if err != nil {
		return false, err
	}
	return created, nil
}
