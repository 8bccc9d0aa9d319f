package fscopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// Copy copies opt.Src from srcRoot into dstRoot with the Dockerfile's COPY semantics:
//
//   - a source directory copies its contents into Dest, merged with what is there; Dest
//     keeps its own metadata when it exists, and takes the source directory's (mode,
//     owner rule, mtime) when the copy creates it;
//   - Dest ending in "/" or several sources after wildcard expansion make Dest a
//     directory, and each file goes into it by its base name; a single file source is
//     written as Dest, or into Dest when Dest is an existing directory. A wildcard that
//     matches exactly one file behaves as that single source, as in Docker and BuildKit;
//   - missing parents of Dest are created 0755 and, as BuildKit does, owned by the
//     --chown owner (0:0 without one);
//   - modes (setuid, setgid, sticky included), mtimes, xattrs, symlinks (not followed),
//     devices and hardlinks within one Copy are preserved; without Chown entries are
//     owned 0:0, or keep their uid/gid with PreserveOwner;
//   - an existing non-directory at a target is replaced; a directory is never replaced
//     by a non-directory nor the reverse (an error, as in BuildKit), except that an
//     existing symlink to a directory inside dstRoot is merged into, so copying "lib/"
//     onto a usr-merged image works.
//
// Ignore patterns hide entries of srcRoot everywhere (see CopyOptions.Ignore). Exclude
// patterns are matched, as BuildKit's copy does, against paths relative to each
// expanded source (a directory source's entries; never the source itself). With
// Parents every source is split at its first "/./" (at the root without one) into a
// directory and a pattern below it; what the pattern matches is copied into Dest with
// its path below that directory, parents included. With AutoExtract a source file that
// is a tar archive is unpacked into Dest (see extract).
//
// Paths are resolved inside their roots; "../x" stays inside srcRoot.
func Copy(ctx context.Context, srcRoot, dstRoot string, opt CopyOptions) error {
	var err error
	if srcRoot, err = cleanRoot(srcRoot); err != nil {
		return fmt.Errorf("resolving source root: %w", err)
	}
	if dstRoot, err = cleanRoot(dstRoot); err != nil {
		return fmt.Errorf("resolving destination root: %w", err)
	}
	c := &copier{dstRoot: dstRoot, preserve: opt.PreserveOwner, links: map[devIno]string{}}
	if opt.Chown != nil {
		id, err := resolveOwner(dstRoot, opt.Chown)
		if err != nil {
			return fmt.Errorf("resolving --chown: %w", err)
		}
		c.chown = &id
	}
	if opt.Mode != nil {
		m := permBits(*opt.Mode)
		c.mode = &m
	}
	srcs, err := expandSources(ctx, srcRoot, expandOptions{
		src: opt.Src, wildcard: opt.AllowWildcard, follow: opt.FollowSymlinks, parents: opt.Parents,
		name: opt.SourceName, ignore: opt.Ignore, exclude: opt.Exclude,
	})
	if err != nil {
		return err
	}
	if len(srcs) == 0 {
		if opt.Parents && len(opt.Src) > 0 {
			return nil // --parents wildcards may match nothing, as in BuildKit
		}
		return errors.New("copying: no source files were specified")
	}
	dest := inRoot(opt.Dest)
	intoDir := strings.HasSuffix(opt.Dest, "/") || len(srcs) > 1
	for _, s := range srcs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if opt.AutoExtract && s.info.Mode().IsRegular() {
			done, err := c.extract(ctx, s.path, dest)
			if err != nil {
				return fmt.Errorf("extracting %s to %s: %w", s.rel, dest, err)
			}
			if done {
				continue
			}
		}
		if err := c.copySource(ctx, s, dest, intoDir); err != nil {
			return fmt.Errorf("copying %s to %s: %w", s.rel, dest, err)
		}
	}
	return nil
}

type devIno struct{ dev, ino uint64 }

// copier holds the state of one Copy.
type copier struct {
	dstRoot  string
	chown    *ids
	preserve bool
	mode     *uint32
	// links maps the first copy of a multiply-linked source inode to its target, so
	// later names of the same inode become hardlinks again.
	links map[devIno]string
}

// copySource copies one expanded source to dest (cleaned, inside dstRoot).
func (c *copier) copySource(ctx context.Context, s source, dest string, intoDir bool) error {
	v := &copyVisitor{c: c, dirs: map[string]string{}}
	if s.contents {
		// A --parents source: as in BuildKit, Dest is made first, 0755 and owned like
		// the copy, and keeps its metadata.
		if err := c.mkdirAll(dest, 0o755, c.defaultOwner()); err != nil {
			return err
		}
	}
	if s.info.IsDir() {
		target, fi, err := c.resolveTarget(dest)
		if err != nil {
			return err
		}
		switch {
		case fi == nil:
			if err := c.mkdirAll(filepath.Dir(c.show(target)), 0o755, c.defaultOwner()); err != nil {
				return err
			}
		case fi.IsDir():
			// Dest keeps its own metadata.
			v.rootExists = true
		default:
			return fmt.Errorf("destination %s exists and is not a directory", dest)
		}
		v.root = target
		w := walker{sel: s.sel, v: v}
		return w.walkSource(ctx, s.path, s.info, s.at)
	}
	if intoDir {
		if err := c.mkdirAll(dest, 0o755, c.defaultOwner()); err != nil {
			return err
		}
		dir, fi, err := c.resolveTarget(dest)
		if err != nil {
			return err
		}
		if fi == nil || !fi.IsDir() {
			return fmt.Errorf("destination %s is not a directory", dest)
		}
		v.root = filepath.Join(dir, filepath.Base(s.rel))
	} else {
		t, fi, err := c.resolveTarget(dest)
		if err != nil {
			return err
		}
		v.root = t
		if fi != nil && fi.IsDir() {
			v.root = filepath.Join(t, filepath.Base(s.rel))
		} else if err := c.mkdirAll(filepath.Dir(c.show(t)), 0o755, c.defaultOwner()); err != nil {
			return err
		}
	}
	return v.enter(s.path, ".", s.info)
}

// copyVisitor writes the entries a walker selects. Each directory's target is kept
// until its children are done: a symlink to a directory in the destination may have
// redirected it.
type copyVisitor struct {
	c *copier
	// root is the target of the source itself; rootExists says it is an existing
	// directory whose metadata stays.
	root       string
	rootExists bool
	dirs       map[string]string
}

func (v *copyVisitor) enter(abs, rel string, fi os.FileInfo) error {
	dst := v.root
	if rel != "." {
		dst = filepath.Join(v.dirs[filepath.Dir(rel)], filepath.Base(rel))
	}
	if !fi.IsDir() {
		return v.c.copyNode(abs, dst, fi)
	}
	if rel == "." && v.rootExists {
		v.dirs[rel] = dst
		return nil
	}
	d, err := v.c.makeDir(dst)
	if err != nil {
		return err
	}
	v.dirs[rel] = d
	return nil
}

func (v *copyVisitor) leave(abs, rel string, fi os.FileInfo) error {
	dst := v.dirs[rel]
	delete(v.dirs, rel)
	if rel == "." && v.rootExists {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("reading %s: no stat data", abs)
	}
	return v.c.applyMeta(abs, dst, fi, st)
}

// resolveTarget resolves dest inside dstRoot. The directories above it are followed; the
// last component is followed only when it is a symlink to a directory (so a file
// replaces a symlink rather than writing through it). fi is nil when nothing is there.
func (c *copier) resolveTarget(dest string) (string, os.FileInfo, error) {
	p, err := resolveEntry(c.dstRoot, dest, false)
	if err != nil {
		return "", nil, err
	}
	fi, err := os.Lstat(p)
	if isNotExist(err) {
		return p, nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		if dir, dfi, ok := c.followDirLink(p); ok {
			return dir, dfi, nil
		}
	}
	return p, fi, nil
}

// followDirLink resolves the symlink p inside dstRoot and reports whether it leads to a
// directory.
func (c *copier) followDirLink(p string) (string, os.FileInfo, bool) {
	full, err := securejoin.SecureJoin(c.dstRoot, c.show(p))
	if err != nil {
		return "", nil, false
	}
	fi, err := os.Lstat(full)
	if err != nil || !fi.IsDir() {
		return "", nil, false
	}
	return full, fi, true
}

// show turns a host path inside dstRoot into the path the image sees.
func (c *copier) show(p string) string {
	return inRoot(strings.TrimPrefix(p, c.dstRoot))
}

func (c *copier) defaultOwner() ids {
	if c.chown != nil {
		return *c.chown
	}
	return ids{}
}

func (c *copier) ownerOf(st *syscall.Stat_t) ids {
	switch {
	case c.chown != nil:
		return *c.chown
	case c.preserve:
		return ids{uid: int(st.Uid), gid: int(st.Gid)}
	}
	return ids{}
}

// mkdirAll creates dir (a path as the image sees it) and its missing parents.
func (c *copier) mkdirAll(dir string, mode uint32, owner ids) error {
	return mkdirAll(c.dstRoot, dir, mode, owner)
}

// makeDir makes dst a directory to copy into: an existing directory (or symlink to one
// inside dstRoot) is merged into, a missing one is created (its metadata comes when the
// walk leaves it), anything else is an error. It returns the directory to write in.
func (c *copier) makeDir(dst string) (string, error) {
	existing, err := os.Lstat(dst)
	if isNotExist(err) {
		return dst, os.Mkdir(dst, 0o700)
	}
	if err != nil {
		return "", err
	}
	if existing.Mode()&os.ModeSymlink != 0 {
		if dir, _, ok := c.followDirLink(dst); ok {
			return dir, nil
		}
	}
	if !existing.IsDir() {
		return "", fmt.Errorf("cannot replace non-directory %s with a directory", c.show(dst))
	}
	return dst, nil
}

// copyNode copies the non-directory src (described by fi, not followed) to dst, whose
// parent exists.
func (c *copier) copyNode(src, dst string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("reading %s: no stat data", src)
	}
	existing, err := os.Lstat(dst)
	if err != nil && !isNotExist(err) {
		return err
	}
	if err == nil {
		if existing.IsDir() {
			return fmt.Errorf("cannot replace directory %s with a non-directory", c.show(dst))
		}
		if err := os.Remove(dst); err != nil {
			return err
		}
	}
	switch fi.Mode().Type() {
	case 0:
		if st.Nlink > 1 {
			key := devIno{dev: st.Dev, ino: st.Ino}
			if first, ok := c.links[key]; ok {
				return os.Link(first, dst)
			}
			c.links[key] = dst
		}
		if err := copyFile(src, dst); err != nil {
			return err
		}
	case os.ModeSymlink:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	default:
		// Devices, fifos and sockets: mknod takes the type bits from st.Mode.
		if err := unix.Mknod(dst, st.Mode, int(st.Rdev)); err != nil {
			return fmt.Errorf("creating %s: %w", c.show(dst), err)
		}
	}
	return c.applyMeta(src, dst, fi, st)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	// *os.File to *os.File: io.Copy takes the copy_file_range fast path (reflinks on
	// filesystems that have them).
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	return out.Close()
}

// applyMeta gives dst the owner, mode, xattrs and times of src. The order matters:
// chown clears setuid/setgid bits and file capabilities, so it goes first.
func (c *copier) applyMeta(src, dst string, fi os.FileInfo, st *syscall.Stat_t) error {
	if err := lchownIfNeeded(dst, c.ownerOf(st)); err != nil {
		return err
	}
	isLink := fi.Mode()&os.ModeSymlink != 0
	if !isLink {
		mode := st.Mode & 0o7777
		if c.mode != nil {
			mode = *c.mode
		}
		if err := unix.Fchmodat(unix.AT_FDCWD, dst, mode, 0); err != nil {
			return fmt.Errorf("setting mode of %s: %w", dst, err)
		}
	}
	if err := copyXattrs(src, dst); err != nil {
		return err
	}
	ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting times of %s: %w", dst, err)
	}
	return nil
}

// lchownIfNeeded skips the syscall when dst already has the owner, which also lets
// tests run unprivileged as long as no ownership change is needed.
func lchownIfNeeded(p string, id ids) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return err
	}
	if int(st.Uid) == id.uid && int(st.Gid) == id.gid {
		return nil
	}
	if err := os.Lchown(p, id.uid, id.gid); err != nil {
		return fmt.Errorf("setting owner of %s: %w", p, err)
	}
	return nil
}
