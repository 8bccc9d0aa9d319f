package fscopy

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
)

// Magic numbers of the compressions ADD understands, as Docker detects them.
var (
	magicGzip  = []byte{0x1f, 0x8b, 0x08}
	magicBzip2 = []byte("BZh")
	magicXz    = []byte{0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// extract unpacks the file src into the directory dest (inside dstRoot) when it is a
// tar archive, and reports whether it was one. Docker's rule decides: the file is an
// archive when, after the decompression its first bytes call for, a tar header can be
// read from it; anything else, a compressed file that is not a tar included, is left
// for a plain copy. Dest is created 0755 (owned by --chown) when missing.
func (c *copier) extract(ctx context.Context, src, dest string) (bool, error) {
	f, err := os.Open(src)
	if err != nil {
		return false, err
	}
	defer f.Close()
	tr, first, closeFn, ok := openArchive(f)
	if !ok {
		return false, nil
	}
	defer closeFn()
	if err := c.mkdirAll(dest, 0o755, c.defaultOwner()); err != nil {
		return true, err
	}
	dir, fi, err := c.resolveTarget(dest)
	if err != nil {
		return true, err
	}
	if fi == nil || !fi.IsDir() {
		return true, fmt.Errorf("destination %s is not a directory", dest)
	}
	x := extractor{dir: dir, chown: c.chown, mode: c.mode}
	return true, x.run(ctx, tr, first)
}

// openArchive decompresses r by its magic number and reads the first tar header. ok is
// false when r is not a (compressed) tar archive.
func openArchive(r io.Reader) (tr *tar.Reader, first *tar.Header, closeFn func(), ok bool) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(len(magicXz))
	var dr io.Reader = br
	closeFn = func() {}
	switch {
	case bytes.HasPrefix(magic, magicGzip):
		zr, err := pgzip.NewReaderN(br, 256<<10, 4)
		if err != nil {
			return nil, nil, nil, false
		}
		dr, closeFn = zr, func() { zr.Close() }
	case bytes.HasPrefix(magic, magicBzip2):
		dr = bzip2.NewReader(br)
	case bytes.HasPrefix(magic, magicXz):
		xr, err := xz.NewReader(br)
		if err != nil {
			return nil, nil, nil, false
		}
		dr = xr
	case bytes.HasPrefix(magic, magicZstd):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, nil, false
		}
		dr, closeFn = zr, zr.Close
	}
	tr = tar.NewReader(dr)
	hdr, err := tr.Next()
	if err != nil {
		closeFn()
		return nil, nil, nil, false
	}
	return tr, hdr, closeFn, true
}

// extractor writes the entries of one archive below dir (absolute, free of symlinks).
//
// Every name is resolved with securejoin inside dir, which acts as the archive's root
// the way Docker's chroot does: "/etc/x" lands in dir/etc/x, and a symlink in the
// archive, absolute or not, cannot lead a later entry out of dir. As in Docker, names
// and link targets that climb above dir with ".." are an error rather than clamped,
// entries replace what is in their way (except a directory merging into one), and
// whiteout files (.wh.*) are plain files: ADD unpacks archives, not layers.
type extractor struct {
	dir   string
	chown *ids
	mode  *uint32
	// dirs are the directories written, by path inside dir, to get their times once
	// nothing more is written into them.
	dirs []dirTimes
}

type dirTimes struct {
	rel          string
	atime, mtime time.Time
}

func (x *extractor) run(ctx context.Context, tr *tar.Reader, hdr *tar.Header) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := x.entry(hdr, tr); err != nil {
			return fmt.Errorf("extracting %q: %w", hdr.Name, err)
		}
		next, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading archive: %w", err)
		}
		hdr = next
	}
	for _, d := range x.dirs {
		p, err := resolveEntry(x.dir, d.rel, false)
		if err != nil {
			return err
		}
		if err := setTimes(p, d.atime, d.mtime); err != nil && !isNotExist(err) {
			return err
		}
	}
	return nil
}

// cleanName turns a tar name into a path inside the archive root ("/a/b"); names that
// climb out with ".." are refused as Docker refuses them.
func cleanName(name string) (string, error) {
	n := path.Clean(name)
	if n == ".." || strings.HasPrefix(n, "../") {
		return "", fmt.Errorf("%q leaves the destination", name)
	}
	return path.Join("/", n), nil
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse, tar.TypeDir, tar.TypeSymlink, tar.TypeLink,
		tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return fmt.Errorf("unhandled tar entry type %q", hdr.Typeflag)
	}
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "/" {
		if hdr.Typeflag == tar.TypeDir {
			return nil // the destination itself keeps its metadata, as in Docker
		}
		return errors.New("a non-directory cannot replace the destination")
	}
	if err := mkdirAll(x.dir, path.Dir(rel), 0o755, x.owner(nil)); err != nil {
		return fmt.Errorf("creating parents: %w", err)
	}
	dst, err := resolveEntry(x.dir, rel, false)
	if err != nil {
		return err
	}
	if existing, err := os.Lstat(dst); err == nil {
		if !existing.IsDir() || hdr.Typeflag != tar.TypeDir {
			if err := os.RemoveAll(dst); err != nil {
				return err
			}
		}
	} else if !isNotExist(err) {
		return err
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := os.Mkdir(dst, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		x.dirs = append(x.dirs, dirTimes{rel: rel, atime: accessTime(hdr), mtime: hdr.ModTime})
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		if err := writeFile(dst, r); err != nil {
			return err
		}
	case tar.TypeSymlink:
		// Docker refuses relative targets that climb out of the destination; absolute
		// ones are resolved inside it when followed.
		base := strings.TrimPrefix(path.Dir(rel), "/")
		if t := path.Join(base, hdr.Linkname); t == ".." || strings.HasPrefix(t, "../") {
			return fmt.Errorf("symlink to %q leaves the destination", hdr.Linkname)
		}
		if err := os.Symlink(hdr.Linkname, dst); err != nil {
			return err
		}
	case tar.TypeLink:
		target, err := cleanName(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hardlink: %w", err)
		}
		src, err := resolveEntry(x.dir, target, false)
		if err != nil {
			return err
		}
		// The link shares its target's inode and metadata: nothing more to set, and
		// chmod would follow a target that is a symlink.
		return os.Link(src, dst)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		typ := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknod(dst, typ|0o600, int(dev)); err != nil {
			return fmt.Errorf("creating node: %w", err)
		}
	}
	return x.applyMeta(dst, hdr)
}

// owner picks --chown over the archive's owner.
func (x *extractor) owner(hdr *tar.Header) ids {
	switch {
	case x.chown != nil:
		return *x.chown
	case hdr != nil:
		return ids{uid: hdr.Uid, gid: hdr.Gid}
	}
	return ids{}
}

// applyMeta gives dst the owner, xattrs, mode and times of hdr, chown first since it
// clears setuid bits.
func (x *extractor) applyMeta(dst string, hdr *tar.Header) error {
	if err := lchownIfNeeded(dst, x.owner(hdr)); err != nil {
		return err
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		// Best effort, as Docker's ADD: not every filesystem takes every namespace.
		err := unix.Lsetxattr(dst, name, []byte(v), 0)
		if err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("setting xattr %s: %w", name, err)
		}
	}
	if hdr.Typeflag != tar.TypeSymlink {
		mode := uint32(hdr.Mode) & 0o7777
		if x.mode != nil {
			mode = *x.mode
		}
		if err := unix.Fchmodat(unix.AT_FDCWD, dst, mode, 0); err != nil {
			return fmt.Errorf("setting mode: %w", err)
		}
	}
	if hdr.Typeflag == tar.TypeDir {
		return nil
	}
	return setTimes(dst, accessTime(hdr), hdr.ModTime)
}

func accessTime(hdr *tar.Header) time.Time {
	if hdr.AccessTime.After(hdr.ModTime) {
		return hdr.AccessTime
	}
	return hdr.ModTime
}

// setTimes sets p's times without following it. Times the kernel cannot take (before
// 1970 or past 2262, as in a zeroed header) become the epoch, as Docker does.
func setTimes(p string, atime, mtime time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(boundTime(atime).UnixNano()), unix.NsecToTimespec(boundTime(mtime).UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: p, Err: err}
	}
	return nil
}

var maxTime = time.Unix(0, 1<<63-1)

func boundTime(t time.Time) time.Time {
	if t.Before(time.Unix(0, 0)) || t.After(maxTime) {
		return time.Unix(0, 0)
	}
	return t
}

// writeFile creates dst, which must not exist (so never through a symlink), with r's
// bytes.
func writeFile(dst string, r io.Reader) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// unpack extracts the archive r (plain or compressed tar) into dir, an existing host
// directory, and reports whether r was an archive. It is the core of ADD's extraction,
// used by Copy and by the fuzz test.
func unpack(ctx context.Context, r io.Reader, dir string, chown *ids, mode *uint32) (bool, error) {
	dir, err := cleanRoot(dir)
	if err != nil {
		return false, err
	}
	tr, first, closeFn, ok := openArchive(r)
	if !ok {
		return false, nil
	}
	defer closeFn()
	x := extractor{dir: dir, chown: chown, mode: mode}
	return true, x.run(ctx, tr, first)
}
