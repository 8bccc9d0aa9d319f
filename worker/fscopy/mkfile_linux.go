package fscopy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// Mkfile writes opt.Data to opt.Path inside root (COPY <<EOF, RUN heredocs), as
// BuildKit's mkfile action does: the path is resolved inside root, symlinks included,
// and the file is written next to its target and renamed over it, so whatever was there
// (a symlink, a device node) is replaced, never written through. Missing parents are
// created 0755 and owned like the file; the owner is resolved against root's
// /etc/passwd and /etc/group.
func Mkfile(ctx context.Context, root string, opt MkfileOptions) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	root, err := cleanRoot(root)
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
	if p == "/" {
		return fmt.Errorf("writing %s: %w", p, unix.EISDIR)
	}
	target, err := securejoin.SecureJoin(root, p)
	if err != nil {
		return fmt.Errorf("resolving %s: %w", p, err)
	}
	if target == root {
		return fmt.Errorf("writing %s: %w", p, unix.EISDIR)
	}
	// The parents of where p leads, a symlink's target included.
	if err := mkdirAll(root, inRoot(strings.TrimPrefix(filepath.Dir(target), root)), 0o755, owner); err != nil {
		return fmt.Errorf("creating parents of %s: %w", p, err)
	}
	if fi, err := os.Lstat(target); err == nil && fi.IsDir() {
		return fmt.Errorf("writing %s: %w", p, unix.EISDIR)
	}
	if err := replaceFile(target, opt.Data, permBits(opt.Mode), owner); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return nil
}

// replaceFile writes data to a temporary file beside target and renames it into place.
func replaceFile(target string, data []byte, mode uint32, owner ids) (err error) {
	f, err := os.CreateTemp(filepath.Dir(target), ".mkfile-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	// fchown before fchmod: chown clears setuid/setgid bits.
	var st unix.Stat_t
	if err = unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if int(st.Uid) != owner.uid || int(st.Gid) != owner.gid {
		if err = f.Chown(owner.uid, owner.gid); err != nil {
			return err
		}
	}
	if err = unix.Fchmod(int(f.Fd()), mode); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), target)
}
