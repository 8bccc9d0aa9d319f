package diff

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/builderdev/builder/cache/content"
)

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// Apply reads a layer blob (gzip, zstd or plain tar, detected from its first bytes) and
// extracts it into dir in overlay form: ".wh.NAME" entries become whiteout devices (char
// 0/0) and ".wh..wh..opq" sets trusted.overlay.opaque=y on its directory. dir is created if
// missing and is normally empty. Apply returns the DiffID, the digest of the uncompressed
// tar stream, which it reads to the end.
//
// The tar is untrusted: names are resolved inside dir (symlinks included), and a name or
// hardlink that climbs out of dir with ".." is an error.
func Apply(ctx context.Context, r io.Reader, dir string) (diffID digest.Digest, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(len(zstdMagic))
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading layer: %w", err)
	}
	var tarStream io.Reader = br
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		gz, err := pgzip.NewReader(br)
		if err != nil {
			return "", fmt.Errorf("decompressing layer: %w", err)
		}
		defer gz.Close()
		tarStream = gz
	case bytes.HasPrefix(magic, zstdMagic):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return "", fmt.Errorf("decompressing layer: %w", err)
		}
		defer zr.Close()
		tarStream = zr
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("extracting layer: %w", err)
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("extracting layer: %w", err)
	}
	h := digest.Canonical.Digester()
	hashed := io.TeeReader(tarStream, h.Hash())
	x := &extractor{
		root:    filepath.Clean(root),
		created: make(map[string]struct{}),
		buf:     make([]byte, 256<<10),
	}
	if err := x.extract(ctx, tar.NewReader(hashed)); err != nil {
		return "", fmt.Errorf("extracting layer into %s: %w", dir, err)
	}
	// The DiffID covers the whole stream, including the end-of-archive blocks and any
	// padding after them; callers verifying the compressed digest need the rest drained too.
	if _, err := io.Copy(io.Discard, hashed); err != nil {
		return "", fmt.Errorf("reading layer: %w", err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return "", fmt.Errorf("reading layer: %w", err)
	}
	return h.Digest(), nil
}

type extractor struct {
	root string
	// created holds the paths this layer wrote, so that a whiteout never removes what its
	// own layer added (the OCI spec: whiteouts apply to lower layers only).
	created  map[string]struct{}
	dirTimes []dirTime
	buf      []byte

	// lastParentRel and lastParent memoize the previous entry's parent resolution:
	// sorted tars put many entries in one directory. Anything that removes a path or
	// creates a symlink clears it, as that may change how names resolve.
	lastParentRel, lastParent string
}

type dirTime struct {
	path         string
	atime, mtime time.Time
}

func (x *extractor) extract(ctx context.Context, tr *tar.Reader) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		if err := x.entry(ctx, hdr, tr); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	// Directory times go last: creating their content changed them.
	for _, d := range x.dirTimes {
		if err := setTimes(d.path, d.atime, d.mtime); err != nil {
			return err
		}
	}
	return nil
}

// cleanName turns a tar name into a clean path relative to the root ("." for the root
// itself). Leading slashes are dropped, as tar does; ".." that climbs out is an error.
func cleanName(name string) (string, error) {
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("path %q escapes the layer root", name)
	}
	return p, nil
}

func (x *extractor) entry(ctx context.Context, hdr *tar.Header, tr *tar.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeGNUSparse:
		return errors.New("sparse files are not supported")
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return errors.New("sparse files are not supported")
		}
	}

	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "." {
		if hdr.Typeflag != tar.TypeDir {
			return errors.New("the layer root must be a directory")
		}
		return x.setMeta(x.root, hdr)
	}

	parentRel, base := path.Split(rel)
	parent, err := x.mkdirParents(parentRel)
	if err != nil {
		return err
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		return x.whiteout(parent, base)
	}
	target := filepath.Join(parent, base)

	var st unix.Stat_t
	switch err := unix.Lstat(target, &st); {
	case err == nil:
		// A directory stays (its content may come from earlier entries); anything else is
		// replaced, as a later entry for the same name wins.
		if hdr.Typeflag != tar.TypeDir || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			x.lastParentRel = ""
			if err := os.RemoveAll(target); err != nil {
				return err
			}
		}
	case !errors.Is(err, unix.ENOENT):
		return fmt.Errorf("stating %s: %w", target, err)
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdir(target, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("creating directory: %w", err)
		}
	case tar.TypeReg, tar.TypeRegA:
		if err := x.writeFile(ctx, target, tr); err != nil {
			return err
		}
	case tar.TypeSymlink:
		// The target is not checked: symlinks may point anywhere, they are only ever
		// resolved inside a root (here by SecureJoin, later by the container's root).
		x.lastParentRel = ""
		if err := unix.Symlinkat(hdr.Linkname, unix.AT_FDCWD, target); err != nil {
			return fmt.Errorf("creating symlink: %w", err)
		}
	case tar.TypeLink:
		return x.hardlink(hdr, target)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(unix.S_IFIFO)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode = unix.S_IFCHR
		case tar.TypeBlock:
			mode = unix.S_IFBLK
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknod(target, mode|0o600, int(dev)); err != nil {
			return fmt.Errorf("creating device node: %w", err)
		}
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	x.created[target] = struct{}{}
	return x.setMeta(target, hdr)
}

// mkdirParents resolves parentRel inside the root, following symlinks the way the
// container would (scoped to the root), and creates missing directories with mode 0755.
func (x *extractor) mkdirParents(parentRel string) (string, error) {
	if parentRel == "" {
		return x.root, nil
	}
	if parentRel == x.lastParentRel {
		return x.lastParent, nil
	}
	p, err := securejoin.SecureJoin(x.root, parentRel)
	if err != nil {
		return "", fmt.Errorf("resolving parent %q: %w", parentRel, err)
	}
	if err := x.mkdirAll(p); err != nil {
		return "", err
	}
	x.lastParentRel, x.lastParent = parentRel, p
	return p, nil
}

// mkdirAll creates p and its missing parents. p comes from SecureJoin, so its existing
// part holds no symlinks and its missing part is plain names below the root.
func (x *extractor) mkdirAll(p string) error {
	var st unix.Stat_t
	err := unix.Lstat(p, &st)
	if err == nil {
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("parent %s is not a directory", p)
		}
		return nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("stating %s: %w", p, err)
	}
	if p == x.root || !strings.HasPrefix(p, x.root+"/") {
		return fmt.Errorf("parent %s is outside the layer root", p)
	}
	if err := x.mkdirAll(filepath.Dir(p)); err != nil {
		return err
	}
	if err := unix.Mkdir(p, 0o755); err != nil {
		return fmt.Errorf("creating directory %s: %w", p, err)
	}
	x.created[p] = struct{}{}
	// Mkdir is subject to the umask; implicit parents are always 0755.
	if err := unix.Chmod(p, 0o755); err != nil {
		return fmt.Errorf("changing mode of %s: %w", p, err)
	}
	return nil
}

func (x *extractor) whiteout(parent, base string) error {
	if base == whiteoutOpaqueDir {
		if err := unix.Lsetxattr(parent, opaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("marking %s opaque: %w", parent, err)
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutMetaPrefix) {
		return nil // reserved for other tools' metadata (aufs); ignore as Docker does
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("invalid whiteout %q", base)
	}
	target := filepath.Join(parent, name)
	if _, ok := x.created[target]; ok {
		return nil
	}
	x.lastParentRel = ""
	if err := os.RemoveAll(target); err != nil {
		return fmt.Errorf("removing whited-out %s: %w", target, err)
	}
	if err := unix.Mknod(target, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("creating whiteout %s: %w", target, err)
	}
	return nil
}

func (x *extractor) hardlink(hdr *tar.Header, target string) error {
	linkRel, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hardlink to %q points outside the layer", hdr.Linkname)
	}
	if linkRel == "." {
		return fmt.Errorf("hardlink to %q points to the layer root", hdr.Linkname)
	}
	dirRel, base := path.Split(linkRel)
	srcDir := x.root
	if dirRel != "" {
		if srcDir, err = securejoin.SecureJoin(x.root, dirRel); err != nil {
			return fmt.Errorf("resolving hardlink target %q: %w", hdr.Linkname, err)
		}
	}
	src := filepath.Join(srcDir, base)
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("hardlink target %q is a directory", hdr.Linkname)
	}
	// linkat without AT_SYMLINK_FOLLOW links a symlink itself, never what it points to.
	if err := unix.Linkat(unix.AT_FDCWD, src, unix.AT_FDCWD, target, 0); err != nil {
		return fmt.Errorf("creating hardlink to %q: %w", hdr.Linkname, err)
	}
	x.created[target] = struct{}{}
	return nil
}

func (x *extractor) writeFile(ctx context.Context, target string, r io.Reader) error {
	fd, err := unix.Open(target, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("creating file: %w", err)
	}
	f := os.NewFile(uintptr(fd), target)
	// The struct hides (*os.File).ReadFrom, which would copy through a fresh 32 KiB
	// buffer per file instead of x.buf.
	_, err = io.CopyBuffer(struct{ io.Writer }{f}, content.ContextReader(ctx, r), x.buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing file: %w", err)
	}
	return nil
}

// setMeta applies owner, xattrs, mode and times from hdr to p. The order matters: chown
// clears setuid bits and file capabilities, so xattrs and mode come after it.
func (x *extractor) setMeta(p string, hdr *tar.Header) error {
	if err := unix.Lchown(p, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("changing owner: %w", err)
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattrPrefix)
		// The overlay's own xattrs would let a layer forge redirects or opaque
		// directories; only whiteout entries may create them.
		if !ok || strings.HasPrefix(name, overlayXattrPref) {
			continue
		}
		if err := unix.Lsetxattr(p, name, []byte(v), 0); err != nil {
			return fmt.Errorf("setting xattr %s: %w", name, err)
		}
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := unix.Fchmodat(unix.AT_FDCWD, p, uint32(hdr.Mode)&0o7777, 0); err != nil {
			return fmt.Errorf("changing mode: %w", err)
		}
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	if hdr.Typeflag == tar.TypeDir {
		x.dirTimes = append(x.dirTimes, dirTime{path: p, atime: atime, mtime: hdr.ModTime})
		return nil
	}
	return setTimes(p, atime, hdr.ModTime)
}

func setTimes(p string, atime, mtime time.Time) error {
	ts := []unix.Timespec{timespec(atime), timespec(mtime)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting times of %s: %w", p, err)
	}
	return nil
}

// timespec converts without UnixNano, which overflows for the far-off times an untrusted
// tar header can carry.
func timespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{}
	}
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}
