package ops

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/pgzip"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
	"github.com/builderdev/builder/cache/remotecache"
	"github.com/builderdev/builder/worker/diff"
)

// ErrCacheMountTooLarge is returned by PackCacheMount for a directory over its size cap.
var ErrCacheMountTooLarge = errors.New("cache mount is larger than the cap")

// PackCacheMount stores (for --cache-to ...,cache-mounts=true) the contents of the cache mount directory dir in cs as a gzip tar
// blob of remotecache.MountMediaType. The cap applies to the sum of the regular files' sizes and is
// checked before anything is written (ErrCacheMountTooLarge); maxSize <= 0 means no cap. An
// empty directory writes nothing and returns ok false. Device nodes and sockets are
// left out: a cache mount is a cache of files, and importers create no devices.
func PackCacheMount(ctx context.Context, cs *content.Store, dir string, maxSize int64) (l cache.Layer, ok bool, err error) {
	var size int64
	var special []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch t := d.Type(); {
		case t.IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			size += fi.Size()
		case t&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeSocket|fs.ModeNamedPipe) != 0:
			special = append(special, p)
		}
		return ctx.Err()
	})
	if err != nil {
		return cache.Layer{}, false, fmt.Errorf("packing cache mount %s: %w", dir, err)
	}
	if maxSize > 0 && size > maxSize {
		return cache.Layer{}, false, fmt.Errorf("packing cache mount: %d bytes, cap %d: %w", size, maxSize, ErrCacheMountTooLarge)
	}
	if len(special) > 0 {
		// diff.WriteLayer tars everything in its directory; rather than fork it, refuse
		// the rare cache that holds device nodes, sockets or fifos.
		return cache.Layer{}, false, fmt.Errorf("packing cache mount: %s is not a file, directory or symlink", special[0])
	}
	l, empty, err := diff.WriteLayer(ctx, cs, dir)
	if err != nil || empty {
		return cache.Layer{}, false, err
	}
	l.MediaType = remotecache.MountMediaType
	return l, true, nil
}

// ExtractCacheMount fetches the cache-mount blob l with fetch and extracts it into dir,
// normally a new empty directory. The blob is untrusted: names are resolved inside dir,
// entries other than files, directories, links and symlinks are refused before
// anything is written, and owners are kept as recorded.
func ExtractCacheMount(ctx context.Context, cs *content.Store, fetch BlobFetcher, l cache.Layer, dir string) error {
	if l.MediaType != remotecache.MountMediaType {
		return fmt.Errorf("media type %q is not a cache mount", l.MediaType)
	}
	if err := fetch.FetchBlob(ctx, l); err != nil {
		return err
	}
	if err := checkMountBlob(ctx, cs, l); err != nil {
		return err
	}
	f, err := cs.Open(ctx, l.Digest)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	diffID, err := diff.Apply(ctx, f, dir)
	if err != nil {
		return err
	}
	if diffID != l.DiffID {
		return fmt.Errorf("content digest %s, expected %s", diffID, l.DiffID)
	}
	return nil
}

// checkMountBlob reads the tar of l once to refuse what diff.Apply would turn into
// device nodes (devices, fifos, overlay whiteouts).
func checkMountBlob(ctx context.Context, cs *content.Store, l cache.Layer) error {
	f, err := cs.Open(ctx, l.Digest)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := pgzip.NewReader(content.ContextReader(ctx, f))
	if err != nil {
		return fmt.Errorf("decompressing: %w", err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeXGlobalHeader:
		default:
			return fmt.Errorf("entry %q: type %q is not allowed in a cache mount", hdr.Name, hdr.Typeflag)
		}
		if strings.HasPrefix(filepath.Base(hdr.Name), ".wh.") {
			return fmt.Errorf("entry %q: whiteouts are not allowed in a cache mount", hdr.Name)
		}
	}
}
