package fscopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// checksumVersion starts every hashed stream; bump it when the record format changes so
// that old cache keys stop matching.
const checksumVersion = "fscopy.checksum.v1"

// Checksum returns a digest of exactly what Copy reads for these sources: each expanded
// source's path, then for every entry under it its relative path, type, permission and
// special bits, uid/gid, symlink target, device number, hardlink relations, xattrs, size
// and content digest. Never mtimes, inode numbers, atimes, ctimes or the root path. It
// hashes uid/gid; use Hasher.Checksum with IncludeOwner unset for build-context copies.
func Checksum(ctx context.Context, srcRoot string, src []string, allowWildcard, followSymlinks bool) (digest.Digest, error) {
	var h Hasher
	return h.Checksum(ctx, srcRoot, ChecksumOptions{
		Src:            src,
		AllowWildcard:  allowWildcard,
		FollowSymlinks: followSymlinks,
		IncludeOwner:   true,
	})
}

// entry is one hashed record; content is filled in by the readers.
type entry struct {
	path    string
	typ     byte
	mode    uint32
	uid     uint32
	gid     uint32
	rdev    uint64
	size    int64
	link    string
	xattrs  []string
	abs     string
	st      *syscall.Stat_t
	content digest.Digest
}

// Checksum is the package-level Checksum with h's stat cache and concurrency, and the
// choices of opt. Entries that Ignore or Exclude leave out, and for Parents entries no
// pattern selects, are not read: changing them does not change the sum.
func (h *Hasher) Checksum(ctx context.Context, srcRoot string, opt ChecksumOptions) (digest.Digest, error) {
	root, err := cleanRoot(srcRoot)
	if err != nil {
		return "", fmt.Errorf("resolving source root: %w", err)
	}
	srcs, err := expandSources(ctx, root, expandOptions{
		src: opt.Src, wildcard: opt.AllowWildcard, follow: opt.FollowSymlinks, parents: opt.Parents,
		name: opt.SourceName, ignore: opt.Ignore, exclude: opt.Exclude,
	})
	if err != nil {
		return "", err
	}

	v := &hashVisitor{links: map[devIno]string{}, withOwner: opt.IncludeOwner}
	for i, s := range srcs {
		// The source's own path names the result when it goes into a directory, and a
		// wildcard's matches are not in the op definition: hash it. A --parents source
		// also names the pattern its entries matched.
		v.entries = append(v.entries, &entry{path: s.rel, typ: 's', link: s.pattern})
		v.prefix = strconv.Itoa(i) + ":"
		w := walker{sel: s.sel, v: v}
		if err := w.walkSource(ctx, s.path, s.info, s.at); err != nil {
			return "", fmt.Errorf("hashing %s: %w", s.rel, err)
		}
	}
	entries := v.entries
	if err := h.hashContents(ctx, entries); err != nil {
		return "", err
	}

	d := digest.Canonical.Digester()
	w := d.Hash()
	io.WriteString(w, checksumVersion)
	w.Write([]byte{0})
	buf := make([]byte, 0, 512)
	for _, e := range entries {
		buf = e.appendRecord(buf[:0])
		w.Write(buf)
	}
	return d.Digest(), nil
}

// hashVisitor records the entries a walker selects.
type hashVisitor struct {
	entries   []*entry
	links     map[devIno]string
	prefix    string
	withOwner bool
}

func (v *hashVisitor) enter(abs, rel string, fi os.FileInfo) error {
	e, err := newEntry(abs, rel, fi, v.withOwner)
	if err != nil {
		return err
	}
	if e.typ == 'f' && e.st.Nlink > 1 {
		k := devIno{dev: e.st.Dev, ino: e.st.Ino}
		if first, ok := v.links[k]; ok {
			e.typ, e.link, e.size = 'h', first, 0
		} else {
			v.links[k] = v.prefix + rel
		}
	}
	v.entries = append(v.entries, e)
	return nil
}

func (v *hashVisitor) leave(string, string, os.FileInfo) error { return nil }

func newEntry(abs, rel string, fi os.FileInfo, withOwner bool) (*entry, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("reading %s: no stat data", abs)
	}
	e := &entry{path: rel, abs: abs, st: st, mode: st.Mode & 0o7777}
	if withOwner {
		e.uid, e.gid = st.Uid, st.Gid
	}
	switch fi.Mode().Type() {
	case 0:
		e.typ, e.size = 'f', st.Size
	case os.ModeDir:
		e.typ = 'd'
	case os.ModeSymlink:
		e.typ = 'l'
		e.mode = 0 // symlink permissions are meaningless on Linux and not copied
		t, err := os.Readlink(abs)
		if err != nil {
			return nil, err
		}
		e.link = t
	default:
		e.typ, e.rdev = 'c', st.Rdev // devices, fifos, sockets: type bits in mode below
		e.mode = st.Mode
	}
	names, vals, err := listXattrs(abs)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		e.xattrs = append(e.xattrs, n+"="+string(vals[n]))
	}
	return e, nil
}

// appendRecord encodes e as NUL-terminated fields. Paths cannot hold NUL, and every
// record has the same number of fields (xattrs are counted), so the stream is
// unambiguous.
func (e *entry) appendRecord(b []byte) []byte {
	field := func(s string) { b = append(b, s...); b = append(b, 0) }
	num := func(n uint64, base int) { b = strconv.AppendUint(b, n, base); b = append(b, 0) }
	b = append(b, e.typ, 0)
	field(e.path)
	num(uint64(e.mode), 8)
	num(uint64(e.uid), 10)
	num(uint64(e.gid), 10)
	num(e.rdev, 10)
	num(uint64(e.size), 10)
	field(e.link)
	field(string(e.content))
	num(uint64(len(e.xattrs)), 10)
	for _, x := range e.xattrs {
		field(x)
	}
	return append(b, '\n')
}

var readBufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// hashContents fills in the content digest of every regular file, reading up to
// h.Jobs files at once.
func (h *Hasher) hashContents(ctx context.Context, entries []*entry) error {
	jobs := h.Jobs
	if jobs <= 0 {
		jobs = runtime.GOMAXPROCS(0)
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for _, e := range entries {
		if e.typ != 'f' {
			continue
		}
		var key StatKey
		if h.StatCache != nil {
			key = StatKey{
				Path: e.abs, Size: e.st.Size, Ino: e.st.Ino, Dev: e.st.Dev,
				Mtime: e.st.Mtim.Nano(), Ctime: e.st.Ctim.Nano(),
			}
			if d, ok := h.StatCache.Get(key); ok {
				e.content = d
				continue
			}
		}
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			d, err := hashFile(e.abs)
			if err != nil {
				return fmt.Errorf("hashing %s: %w", e.path, err)
			}
			e.content = d
			if h.StatCache != nil {
				h.StatCache.Put(key, d)
			}
			return nil
		})
	}
	return g.Wait()
}

// hashFile reads p with plain syscalls: os.Open would also try to register every file
// with the netpoller, a wasted syscall per file that shows on large contexts.
func hashFile(p string) (digest.Digest, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	bp := readBufPool.Get().(*[]byte)
	defer readBufPool.Put(bp)
	d := digest.Canonical.Digester()
	h := d.Hash()
	for {
		n, err := unix.Read(fd, *bp)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return "", &os.PathError{Op: "read", Path: p, Err: err}
		}
		if n <= 0 {
			return d.Digest(), nil
		}
		h.Write((*bp)[:n])
	}
}
