package diff

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
	"github.com/klauspost/pgzip"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// gzipBlockSize is fixed, never derived from the machine, because pgzip's block
// boundaries shape the compressed bytes and the blob digest must not depend on the
// number of CPUs.
const gzipBlockSize = 1 << 20

// Option configures WriteLayer.
type Option func(*options) error

type options struct {
	level  int
	blocks int
	epoch  time.Time // zero: no clamping
}

// WithCompressionLevel sets the gzip level: pgzip.DefaultCompression (-1),
// pgzip.HuffmanOnly (-2), or 0 (stored) to 9 (best). The default is pgzip.DefaultCompression.
func WithCompressionLevel(level int) Option {
	return func(o *options) error {
		if level < pgzip.HuffmanOnly || level > pgzip.BestCompression {
			return fmt.Errorf("compression level %d out of range [%d, %d]", level, pgzip.HuffmanOnly, pgzip.BestCompression)
		}
		o.level = level
		return nil
	}
}

// WithCompressionBlocks sets how many 1 MiB blocks pgzip may compress at once. The
// default is twice GOMAXPROCS, so that the tar walk can fill the next block while every
// core compresses one. It never changes the output bytes.
func WithCompressionBlocks(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return errors.New("compression blocks must be greater than zero")
		}
		o.blocks = n
		return nil
	}
}

// WithSourceDateEpoch clamps every mtime in the layer to at most t (SOURCE_DATE_EPOCH),
// so that rebuilding the same tree at another time gives the same layer digest.
func WithSourceDateEpoch(t time.Time) Option {
	return func(o *options) error {
		if t.IsZero() {
			return errors.New("source date epoch must not be the zero time")
		}
		o.epoch = t.Truncate(time.Second)
		return nil
	}
}

func makeOptions(opts []Option) (*options, error) {
	o := &options{level: pgzip.DefaultCompression, blocks: 2 * runtime.GOMAXPROCS(0)}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// WriteLayer tars upperDir (an overlayfs upper directory: the changes of one step) as an
// OCI layer, compresses it with pgzip and commits the blob to cs. empty is true, and no
// blob is written, when upperDir holds no changes at all.
//
// Entries are written in lexical order per directory, with overlay whiteouts converted to
// OCI ".wh." entries and trusted.overlay.* xattrs dropped. The uncompressed stream (the
// DiffID) and the compressed blob are hashed in the same pass.
func WriteLayer(ctx context.Context, cs *content.Store, upperDir string, opts ...Option) (layer cache.Layer, empty bool, err error) {
	o, err := makeOptions(opts)
	if err != nil {
		return cache.Layer{}, false, fmt.Errorf("writing layer: %w", err)
	}
	isEmpty, err := dirIsEmpty(upperDir)
	if err != nil {
		return cache.Layer{}, false, fmt.Errorf("writing layer of %s: %w", upperDir, err)
	}
	if isEmpty {
		return cache.Layer{}, true, nil
	}

	cw, err := cs.Writer(ctx)
	if err != nil {
		return cache.Layer{}, false, err
	}
	defer cw.Close()
	gz, err := pgzip.NewWriterLevel(cw, o.level)
	if err != nil {
		return cache.Layer{}, false, fmt.Errorf("writing layer: %w", err)
	}
	if err := gz.SetConcurrency(gzipBlockSize, o.blocks); err != nil {
		return cache.Layer{}, false, fmt.Errorf("writing layer: %w", err)
	}
	// Close stops pgzip's goroutines on every path; after a successful Close it is a no-op.
	defer gz.Close()

	diffID := digest.Canonical.Digester()
	tw := tar.NewWriter(io.MultiWriter(diffID.Hash(), gz))
	lw := &layerWriter{
		tw:    tw,
		opts:  o,
		links: make(map[fileID]string),
		buf:   make([]byte, 256<<10),
	}
	if err := lw.walk(ctx, upperDir, ""); err != nil {
		return cache.Layer{}, false, fmt.Errorf("writing layer of %s: %w", upperDir, err)
	}
	if err := tw.Close(); err != nil {
		return cache.Layer{}, false, fmt.Errorf("writing layer of %s: %w", upperDir, err)
	}
	if err := gz.Close(); err != nil {
		return cache.Layer{}, false, fmt.Errorf("compressing layer of %s: %w", upperDir, err)
	}
	size := cw.Size()
	dgst, err := cw.Commit(ctx, size, "")
	if err != nil {
		return cache.Layer{}, false, err
	}
	return cache.Layer{
		DiffID:    diffID.Digest(),
		Digest:    dgst,
		Size:      size,
		MediaType: ocispec.MediaTypeImageLayerGzip,
	}, false, nil
}

func dirIsEmpty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}

type fileID struct{ dev, ino uint64 }

type layerWriter struct {
	tw    *tar.Writer
	opts  *options
	links map[fileID]string // first name written for each multiply-linked inode
	buf   []byte
}

// walk writes the entries below abs, whose name in the layer is rel ("" for the root).
func (lw *layerWriter) walk(ctx context.Context, abs, rel string) error {
	names, err := readDirNames(abs)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := lw.entry(ctx, filepath.Join(abs, name), path.Join(rel, name)); err != nil {
			return err
		}
	}
	return nil
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("reading directory %s: %w", dir, err)
	}
	slices.Sort(names)
	return names, nil
}

func (lw *layerWriter) entry(ctx context.Context, abs, rel string) error {
	var st unix.Stat_t
	if err := unix.Lstat(abs, &st); err != nil {
		return fmt.Errorf("stating %s: %w", abs, err)
	}
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: lw.mtime(st.Mtim.Sec),
		Format:  tar.FormatPAX,
	}
	typ := st.Mode & unix.S_IFMT

	// Whiteouts first: overlay may share one whiteout inode between many names, and
	// those must not turn into hardlinks.
	if typ == unix.S_IFCHR && st.Rdev == 0 {
		hdr.Name = path.Join(path.Dir(rel), whiteoutPrefix+path.Base(rel))
		hdr.Typeflag = tar.TypeReg
		hdr.Mode = 0
		return lw.writeHeader(hdr)
	}
	if typ == unix.S_IFSOCK {
		return nil // sockets cannot be archived; they are runtime state
	}

	xattrs, err := listXattrs(abs)
	if err != nil {
		return err
	}
	opaque := false
	for k, v := range xattrs {
		if k == opaqueXattr && v == "y" {
			opaque = true
		}
		if strings.HasPrefix(k, overlayXattrPref) {
			continue
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = make(map[string]string)
		}
		hdr.PAXRecords[paxXattrPrefix+k] = v
	}

	if typ != unix.S_IFDIR && st.Nlink > 1 {
		id := fileID{dev: uint64(st.Dev), ino: st.Ino}
		if first, ok := lw.links[id]; ok {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = first
			hdr.PAXRecords = nil
			return lw.writeHeader(hdr)
		}
		lw.links[id] = rel
	}

	switch typ {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name = rel + "/"
		if err := lw.writeHeader(hdr); err != nil {
			return err
		}
		if opaque {
			if err := lw.writeHeader(&tar.Header{
				Name:     path.Join(rel, whiteoutOpaqueDir),
				Typeflag: tar.TypeReg,
				Mode:     hdr.Mode & 0o777,
				Uid:      hdr.Uid,
				Gid:      hdr.Gid,
				ModTime:  hdr.ModTime,
				Format:   tar.FormatPAX,
			}); err != nil {
				return err
			}
		}
		return lw.walk(ctx, abs, rel)
	case unix.S_IFREG:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size
		if err := lw.writeHeader(hdr); err != nil {
			return err
		}
		return lw.copyFile(ctx, abs, st.Size)
	case unix.S_IFLNK:
		target, err := os.Readlink(abs)
		if err != nil {
			return fmt.Errorf("reading symlink %s: %w", abs, err)
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if typ == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64(unix.Major(uint64(st.Rdev)))
		hdr.Devminor = int64(unix.Minor(uint64(st.Rdev)))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return fmt.Errorf("archiving %s: unknown file type %#o", abs, typ)
	}
	return lw.writeHeader(hdr)
}

func (lw *layerWriter) mtime(sec int64) time.Time {
	t := time.Unix(sec, 0)
	if !lw.opts.epoch.IsZero() && t.After(lw.opts.epoch) {
		return lw.opts.epoch
	}
	return t
}

func (lw *layerWriter) writeHeader(hdr *tar.Header) error {
	if err := lw.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing tar header for %s: %w", hdr.Name, err)
	}
	return nil
}

func (lw *layerWriter) copyFile(ctx context.Context, abs string, size int64) error {
	f, err := os.OpenFile(abs, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", abs, err)
	}
	defer f.Close()
	n, err := io.CopyBuffer(lw.tw, content.ContextReader(ctx, f), lw.buf)
	if err != nil {
		return fmt.Errorf("archiving %s: %w", abs, err)
	}
	if n != size {
		return fmt.Errorf("archiving %s: file changed while archiving: read %d bytes, expected %d", abs, n, size)
	}
	return nil
}
