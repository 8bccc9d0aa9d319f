package gc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MountsPruned is what PruneCacheMounts removed.
type MountsPruned struct {
	Instances int
	Freed     int64
}

// PruneCacheMounts removes the RUN --mount=type=cache instances under dir (laid out as
// solver/ops keeps them: <key>/<n>/ with its lock <key>/<n>.lock) last used before
// cutoff (any, when cutoff is zero). An instance whose lock someone holds is in use and
// stays. A key left without instances loses its directory too, which is safe only
// while the caller holds the exclusive gc lock: no build can be about to use it.
func PruneCacheMounts(ctx context.Context, dir string, cutoff time.Time) (MountsPruned, error) {
	var out MountsPruned
	keys, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("listing cache mounts: %w", err)
	}
	var errs []error
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		if !k.IsDir() {
			continue
		}
		base := filepath.Join(dir, k.Name())
		left, err := pruneKey(base, cutoff, &out)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !left {
			n, _ := DirSize(base)
			if err := os.RemoveAll(base); err != nil {
				errs = append(errs, fmt.Errorf("removing cache mount: %w", err))
				continue
			}
			out.Freed += n
		}
	}
	return out, errors.Join(errs...)
}

// pruneKey removes the unused instances of one cache and reports whether any are left.
func pruneKey(base string, cutoff time.Time, out *MountsPruned) (left bool, err error) {
	ents, err := os.ReadDir(base)
	if err != nil {
		return true, fmt.Errorf("listing cache mount: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".new-") {
			// A creator's temp dir: only a dead creator leaves one behind, and a live
			// one would hold create.lock.
			if busy(filepath.Join(base, "create.lock")) {
				left = true
			}
			continue
		}
		if _, err := strconv.Atoi(e.Name()); err != nil || !e.IsDir() {
			continue
		}
		inst := filepath.Join(base, e.Name())
		removed, err := pruneInstance(inst, inst+".lock", cutoff, out)
		if err != nil {
			return true, err
		}
		left = left || !removed
	}
	return left, nil
}

func pruneInstance(inst, lockPath string, cutoff time.Time, out *MountsPruned) (bool, error) {
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false, fmt.Errorf("opening cache mount lock: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return false, nil // in use
	}
	if !cutoff.IsZero() && newest(inst).After(cutoff) {
		return false, nil
	}
	n, _ := DirSize(inst)
	if err := os.RemoveAll(inst); err != nil {
		return false, fmt.Errorf("removing cache mount: %w", err)
	}
	out.Instances++
	out.Freed += n
	return true, nil
}

// busy reports whether someone holds the flock on path.
func busy(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil
}

// newest is the latest modification time in the tree at p: a cache mount's use shows
// as the files a build wrote into it.
func newest(p string) time.Time {
	var t time.Time
	filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().After(t) {
			t = fi.ModTime()
		}
		return nil
	})
	return t
}

// DirSize is the disk use of the tree at p as du counts it: allocated blocks, each
// inode once.
func DirSize(p string) (int64, error) {
	var n int64
	seen := map[uint64]bool{}
	err := filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || seen[st.Ino] {
			return nil
		}
		seen[st.Ino] = true
		n += st.Blocks * 512
		return nil
	})
	return n, err
}
