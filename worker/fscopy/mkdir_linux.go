package fscopy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// Mkdir creates opt.Path inside dstRoot, as BuildKit's mkdir file action does: an
// existing directory is not an error, and with MakeParents every directory it creates
// gets opt.Mode and the owner.
func Mkdir(ctx context.Context, dstRoot string, opt MkdirOptions) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	root, err := cleanRoot(dstRoot)
	if err != nil {
		return fmt.Errorf("resolving destination root: %w", err)
	}
	var owner ids
	if opt.Chown != nil {
		if owner, err = resolveOwner(root, opt.Chown); err != nil {
			return fmt.Errorf("resolving --chown: %w", err)
		}
	}
	p := inRoot(opt.Path)
	mode := permBits(opt.Mode)
	if opt.MakeParents {
		if err := mkdirAll(root, p, mode, owner); err != nil {
			return fmt.Errorf("creating %s: %w", p, err)
		}
		return nil
	}
	dir, err := resolveEntry(root, p, true)
	if err != nil {
		return fmt.Errorf("creating %s: %w", p, err)
	}
	if err := mkdirOwned(dir, mode, owner); err != nil {
		if errors.Is(err, fs.ErrExist) {
			if fi, serr := os.Stat(dir); serr == nil && fi.IsDir() {
				return nil
			}
		}
		return fmt.Errorf("creating %s: %w", p, err)
	}
	return nil
}

// mkdirAll creates dir (a path inside root) and every missing directory above it with
// mode and owner. Existing directories are left as they are.
func mkdirAll(root, dir string, mode uint32, owner ids) error {
	p, err := securejoin.SecureJoin(root, dir)
	if err != nil {
		return err
	}
	// securejoin resolved every existing component, so the missing ones are plain names
	// under the deepest existing directory.
	var missing []string
	for cur := p; ; cur = filepath.Dir(cur) {
		fi, err := os.Lstat(cur)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s: %w", inRoot(cur[len(root):]), unix.ENOTDIR)
			}
			break
		}
		if !isNotExist(err) {
			return err
		}
		if cur == root {
			return err
		}
		missing = append(missing, cur)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := mkdirOwned(missing[i], mode, owner); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

// mkdirOwned creates one directory with exactly mode (no umask) and owner.
func mkdirOwned(p string, mode uint32, owner ids) error {
	if err := os.Mkdir(p, 0o700); err != nil {
		return err
	}
	if err := lchownIfNeeded(p, owner); err != nil {
		return err
	}
	if err := unix.Fchmodat(unix.AT_FDCWD, p, mode, 0); err != nil {
		return fmt.Errorf("setting mode of %s: %w", p, err)
	}
	return nil
}
