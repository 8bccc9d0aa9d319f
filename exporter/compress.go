package exporter

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
)

// Compression is how a layer blob is encoded.
type Compression string

// The layer compressions outputs can ask for.
const (
	Gzip         Compression = "gzip"
	Zstd         Compression = "zstd"
	Uncompressed Compression = "uncompressed"
)

// ParseCompression reads a compression= attribute value.
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(strings.ToLower(s)); c {
	case Gzip, Zstd, Uncompressed:
		return c, nil
	}
	return "", fmt.Errorf("unknown compression %q (want gzip, zstd or uncompressed)", s)
}

// Compress says how an output wants its layer blobs. The zero value is gzip at the
// default level, reusing the blobs made when the layers were committed.
type Compress struct {
	// Type is the compression; "" means gzip.
	Type Compression
	// Level is the compression level (gzip -2..9, zstd 1..22); nil is the default of
	// the algorithm. Like BuildKit, it only applies to blobs that are (re)compressed.
	Level *int
	// Force recompresses layers that already have the wanted compression.
	Force bool
}

func (c Compress) typ() Compression {
	if c.Type == "" {
		return Gzip
	}
	return c.Type
}

// Validate checks the level against the compression.
func (c Compress) Validate() error {
	if c.Level == nil {
		return nil
	}
	l := *c.Level
	switch c.typ() {
	case Gzip:
		if l < pgzip.HuffmanOnly || l > pgzip.BestCompression {
			return fmt.Errorf("gzip compression level %d out of range [%d, %d]", l, pgzip.HuffmanOnly, pgzip.BestCompression)
		}
	case Zstd:
		if l < 1 || l > 22 {
			return fmt.Errorf("zstd compression level %d out of range [1, 22]", l)
		}
	case Uncompressed:
	default:
		return fmt.Errorf("unknown compression %q", c.Type)
	}
	return nil
}

// key names a conversion result: the same diffID, compression and level always give
// the same bytes.
func (c Compress) key() string {
	level := "default"
	if c.Level != nil {
		level = strconv.Itoa(*c.Level)
	}
	return string(c.typ()) + "-" + level
}

// gzipBlockSize matches the differ's pgzip block size, which shapes the compressed
// bytes: it must not depend on the machine.
const gzipBlockSize = 1 << 20

// LayerCompression tells the compression of a layer from its media type (OCI or
// Docker); an empty media type is gzip, what the differ writes.
func LayerCompression(mediaType string) (Compression, error) {
	switch {
	case mediaType == "", strings.HasSuffix(mediaType, "+gzip"), strings.HasSuffix(mediaType, ".tar.gzip"):
		return Gzip, nil
	case strings.HasSuffix(mediaType, "+zstd"):
		return Zstd, nil
	case strings.HasSuffix(mediaType, ".tar"), strings.HasSuffix(mediaType, ".tar.diff"):
		return Uncompressed, nil
	}
	return "", fmt.Errorf("layer media type %q: unknown compression", mediaType)
}

// ociLayerMediaType is the OCI media type of a layer blob with compression c.
func ociLayerMediaType(c Compression) string {
	switch c {
	case Zstd:
		return ocispec.MediaTypeImageLayerZstd
	case Uncompressed:
		return ocispec.MediaTypeImageLayer
	}
	return ocispec.MediaTypeImageLayerGzip
}

// Converter gives layers in the compression an output asks for. A layer blob in
// another compression is converted once: the result stays in the content store and a
// small record under dir (one JSON file per diffID and compression) remembers it, so
// later exports and pushes, also by other processes, reuse it.
type Converter struct {
	cs  *content.Store
	dir string
	// conversions counts the blobs this converter wrote, for tests.
	conversions atomic.Int64
}

// NewConverter returns a converter that keeps its records in dir, created with the
// first record: read-only users (du, prune) leave no trace.
func NewConverter(cs *content.Store, dir string) (*Converter, error) {
	return &Converter{cs: cs, dir: dir}, nil
}

// Conversion is one recorded conversion: the converted layer (zero when its record is
// unreadable, so that it can still be forgotten) and the record's file.
type Conversion struct {
	Layer cache.Layer
	path  string
}

// Recorded lists the recorded conversions, for disk-use accounting and prune.
func (c *Converter) Recorded() ([]Conversion, error) {
	ents, err := os.ReadDir(c.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing conversion records: %w", err)
	}
	var out []Conversion
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(c.dir, e.Name())
		dt, err := os.ReadFile(p)
		if err != nil {
			continue // removed meanwhile
		}
		var l cache.Layer
		if json.Unmarshal(dt, &l) != nil || l.Digest.Validate() != nil {
			l = cache.Layer{}
		}
		out = append(out, Conversion{Layer: l, path: p})
	}
	return out, nil
}

// Forget removes conv's record (not its blob): a later Convert makes it again if needed.
func (c *Converter) Forget(conv Conversion) error {
	if err := os.Remove(conv.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing conversion record: %w", err)
	}
	return nil
}

// Layers converts every layer with Convert, two at a time (the compressors use
// several cores themselves).
func (c *Converter) Layers(ctx context.Context, layers []cache.Layer, want Compress) ([]cache.Layer, error) {
	if err := want.Validate(); err != nil {
		return nil, err
	}
	out := make([]cache.Layer, len(layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for i, l := range layers {
		g.Go(func() error {
			cl, err := c.Convert(gctx, l, want)
			out[i] = cl
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// Convert returns l as a blob in the wanted compression: l itself when it already has
// it (unless want.Force), the uncompressed blob named by its diffID when that is
// stored, a recorded earlier conversion, or else a new conversion.
func (c *Converter) Convert(ctx context.Context, l cache.Layer, want Compress) (cache.Layer, error) {
	have, err := LayerCompression(l.MediaType)
	if err != nil {
		return cache.Layer{}, err
	}
	target := want.typ()
	if have == target && (!want.Force || target == Uncompressed) {
		l.MediaType = ociLayerMediaType(target)
		return l, nil
	}
	if target == Uncompressed {
		if size, err := c.cs.Size(l.DiffID); err == nil {
			return cache.Layer{DiffID: l.DiffID, Digest: l.DiffID, Size: size, MediaType: ociLayerMediaType(Uncompressed)}, nil
		}
	}
	rec := filepath.Join(c.dir, l.DiffID.Encoded()+"."+want.key()+".json")
	if dt, err := os.ReadFile(rec); err == nil {
		var got cache.Layer
		if json.Unmarshal(dt, &got) == nil && got.DiffID == l.DiffID {
			if size, err := c.cs.Size(got.Digest); err == nil && size == got.Size {
				return got, nil
			}
		}
		// A record whose blob was pruned or is damaged is made again below.
	}
	got, err := c.convert(ctx, l, have, want)
	if err != nil {
		return cache.Layer{}, fmt.Errorf("converting layer %s to %s: %w", l.Digest, target, err)
	}
	dt, err := json.Marshal(got)
	if err != nil {
		return cache.Layer{}, err
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return cache.Layer{}, fmt.Errorf("recording conversion of layer %s: %w", l.Digest, err)
	}
	if err := cache.WriteFileAtomic(rec, dt); err != nil {
		return cache.Layer{}, fmt.Errorf("recording conversion of layer %s: %w", l.Digest, err)
	}
	return got, nil
}

// convert decompresses l's blob and compresses it as wanted into the content store,
// checking on the way that the tar is still the one named by l's diffID.
func (c *Converter) convert(ctx context.Context, l cache.Layer, have Compression, want Compress) (cache.Layer, error) {
	f, err := c.cs.Open(ctx, l.Digest)
	if err != nil {
		return cache.Layer{}, err
	}
	defer f.Close()
	tarStream, closeTar, err := decompress(bufio.NewReaderSize(f, 1<<20), have)
	if err != nil {
		return cache.Layer{}, err
	}
	defer closeTar()

	w, err := c.cs.Writer(ctx)
	if err != nil {
		return cache.Layer{}, err
	}
	defer w.Close()
	zw, err := compressor(w, want)
	if err != nil {
		return cache.Layer{}, err
	}
	diffID := digest.Canonical.Digester()
	_, err = io.Copy(io.MultiWriter(zw, diffID.Hash()), content.ContextReader(ctx, tarStream))
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return cache.Layer{}, err
	}
	if got := diffID.Digest(); got != l.DiffID {
		return cache.Layer{}, fmt.Errorf("blob holds a tar with diffID %s, want %s", got, l.DiffID)
	}
	size := w.Size()
	d, err := w.Commit(ctx, size, "")
	if err != nil {
		return cache.Layer{}, err
	}
	c.conversions.Add(1)
	return cache.Layer{DiffID: l.DiffID, Digest: d, Size: size, MediaType: ociLayerMediaType(want.typ())}, nil
}

// decompress returns the tar stream inside r.
func decompress(r io.Reader, have Compression) (io.Reader, func(), error) {
	switch have {
	case Gzip:
		zr, err := pgzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("reading gzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case Zstd:
		zr, err := zstd.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("reading zstd: %w", err)
		}
		return zr, zr.Close, nil
	case Uncompressed:
		return r, func() {}, nil
	}
	return nil, nil, fmt.Errorf("unknown compression %q", have)
}

// compressor returns a writer compressing into w as wanted; Close flushes it (and
// leaves w open).
func compressor(w io.Writer, want Compress) (io.WriteCloser, error) {
	switch want.typ() {
	case Gzip:
		level := pgzip.DefaultCompression
		if want.Level != nil {
			level = *want.Level
		}
		zw, err := pgzip.NewWriterLevel(w, level)
		if err != nil {
			return nil, err
		}
		// Block size fixed, as in the differ, so the bytes do not depend on the CPUs.
		if err := zw.SetConcurrency(gzipBlockSize, 4); err != nil {
			return nil, err
		}
		return zw, nil
	case Zstd:
		level := zstd.SpeedDefault
		if want.Level != nil {
			level = zstd.EncoderLevelFromZstd(*want.Level)
		}
		return zstd.NewWriter(w, zstd.WithEncoderLevel(level))
	case Uncompressed:
		return nopWriteCloser{w}, nil
	}
	return nil, fmt.Errorf("unknown compression %q", want.Type)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// errZstdDocker is returned when Docker media types are asked for zstd layers, which
// they cannot name.
var errZstdDocker = errors.New(`zstd layers need OCI media types (compression=zstd conflicts with oci-mediatypes=false)`)
