// Package ocilayout writes an image as an OCI image layout, as a directory or as a
// tar of one (what BuildKit's type=oci output and skopeo's oci-archive: read).
//
// A multi-platform image (ExportIndex) is written as BuildKit writes it: index.json
// points at an image index blob, which lists one manifest per platform, each
// descriptor with its platform.
//
// Each name becomes an index.json entry annotated with
// org.opencontainers.image.ref.name set to the tag ("v1"), which is how skopeo
// (oci:DIR:v1) and umoci (--image DIR:v1) pick an image, and io.containerd.image.name
// set to the full normalised name, as BuildKit does.
//
// A directory destination is built beside dest and swapped in at the end. An existing
// dest is replaced only if it is empty or already an OCI layout (has an oci-layout
// file); any other non-empty directory is refused, so a mistyped path cannot wipe out
// unrelated files.
package ocilayout

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/builderdev/builder/exporter"
	"github.com/builderdev/builder/internal/registry"
)

// containerdImageName is the annotation containerd and BuildKit use for the full name.
const containerdImageName = "io.containerd.image.name"

// Config says where the layout goes and under which names.
type Config struct {
	// Dest is the layout directory, or the tar file if Tar is set.
	Dest string
	// Names are image names; each gets its own index entry. With none the index has
	// one entry without a name.
	Names []string
	// Tar writes a tar of the layout instead of a directory.
	Tar bool
	// Annotations go on the image's descriptor in index.json (BuildKit's
	// annotation-manifest-descriptor.KEY), besides the names and
	// org.opencontainers.image.created, which is the config's creation time.
	Annotations map[string]string
}

var _ exporter.Exporter = Config{}

// Export writes img as configured.
func (c Config) Export(ctx context.Context, img v1.Image) error {
	idx, err := c.index(img)
	if err != nil {
		return fmt.Errorf("writing OCI layout %s: %w", c.Dest, err)
	}
	return c.export(ctx, idx)
}

// ExportIndex writes a multi-platform index (and every image it lists) as configured:
// each name is an index.json entry pointing at the index.
func (c Config) ExportIndex(ctx context.Context, mp v1.ImageIndex) error {
	idx, err := c.indexOfIndex(mp)
	if err != nil {
		return fmt.Errorf("writing OCI layout %s: %w", c.Dest, err)
	}
	return c.export(ctx, idx)
}

func (c Config) export(ctx context.Context, idx v1.ImageIndex) error {
	var err error
	if c.Tar {
		err = exporter.WriteFile(ctx, c.Dest, func(f *os.File) error {
			return writeTar(exporter.CancelWriter(ctx, f), idx)
		})
	} else {
		err = writeDir(ctx, c.Dest, idx)
	}
	if err != nil {
		return fmt.Errorf("writing OCI layout %s: %w", c.Dest, err)
	}
	return nil
}

// WriteTo streams a tar of the layout to w (a pipe or stdout is fine); Dest and Tar
// are not used.
func (c Config) WriteTo(ctx context.Context, img v1.Image, w io.Writer) error {
	idx, err := c.index(img)
	if err != nil {
		return fmt.Errorf("writing OCI layout: %w", err)
	}
	if err := writeTar(exporter.CancelWriter(ctx, w), idx); err != nil {
		return fmt.Errorf("writing OCI layout: %w", err)
	}
	return nil
}

// WriteIndexTo is WriteTo for a multi-platform index.
func (c Config) WriteIndexTo(ctx context.Context, mp v1.ImageIndex, w io.Writer) error {
	idx, err := c.indexOfIndex(mp)
	if err != nil {
		return fmt.Errorf("writing OCI layout: %w", err)
	}
	if err := writeTar(exporter.CancelWriter(ctx, w), idx); err != nil {
		return fmt.Errorf("writing OCI layout: %w", err)
	}
	return nil
}

// Write writes img as an OCI layout at dest (a tar of it if asTar), named names.
func Write(ctx context.Context, img v1.Image, names []string, dest string, asTar bool) error {
	return Config{Dest: dest, Names: names, Tar: asTar}.Export(ctx, img)
}

// index is the layout's index.json: one entry per distinct name, all pointing at img.
func (c Config) index(img v1.Image) (v1.ImageIndex, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	return c.entries(img, v1.Descriptor{Platform: cf.Platform()}, cf.Created.Time)
}

// indexOfIndex is the layout's index.json for a multi-platform index: one entry per
// distinct name, all pointing at mp. Its creation time is the latest of its images'.
func (c Config) indexOfIndex(mp v1.ImageIndex) (v1.ImageIndex, error) {
	m, err := mp.IndexManifest()
	if err != nil {
		return nil, err
	}
	var created time.Time
	for _, d := range m.Manifests {
		if !d.MediaType.IsImage() {
			continue
		}
		img, err := mp.Image(d.Digest)
		if err != nil {
			return nil, err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		if cf.Created.After(created) {
			created = cf.Created.Time
		}
	}
	mt, err := mp.MediaType()
	if err != nil {
		return nil, err
	}
	return c.entries(mp, v1.Descriptor{MediaType: mt}, created)
}

// entries makes index.json's entries for add (an image or an index), each a copy of
// base with the name and creation annotations.
func (c Config) entries(add mutate.Appendable, base v1.Descriptor, created time.Time) (v1.ImageIndex, error) {
	annotations := maps.Clone(c.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	if _, ok := annotations[ocispec.AnnotationCreated]; !ok && !created.IsZero() {
		annotations[ocispec.AnnotationCreated] = created.UTC().Format(time.RFC3339)
	}
	var adds []mutate.IndexAddendum
	seen := map[string]bool{}
	for _, n := range c.Names {
		norm, err := registry.Normalize(n)
		if err != nil {
			return nil, err
		}
		if strings.Contains(norm, "@") {
			return nil, fmt.Errorf("image name %q: a layout entry is named by a tag, not a digest", n)
		}
		if seen[norm] {
			continue
		}
		seen[norm] = true
		d := base
		d.Annotations = maps.Clone(annotations)
		d.Annotations[ocispec.AnnotationRefName] = norm[strings.LastIndex(norm, ":")+1:]
		d.Annotations[containerdImageName] = norm
		adds = append(adds, mutate.IndexAddendum{Add: add, Descriptor: d})
	}
	if len(adds) == 0 {
		d := base
		if len(annotations) > 0 {
			d.Annotations = annotations
		}
		adds = append(adds, mutate.IndexAddendum{Add: add, Descriptor: d})
	}
	return mutate.AppendManifests(empty.Index, adds...), nil
}

// writeDir builds the layout in a temporary directory beside dest with
// go-containerregistry's layout package, then moves it into place.
func writeDir(ctx context.Context, dest string, idx v1.ImageIndex) (err error) {
	replace, err := checkDest(dest)
	if err != nil {
		return err
	}
	parent, base := filepath.Split(filepath.Clean(dest))
	if parent == "" {
		parent = "."
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("creating temporary directory: %w", err)
	}
	defer func() {
		// After a swap tmp holds the old layout; either way it goes.
		if rerr := os.RemoveAll(tmp); rerr != nil && err == nil {
			err = fmt.Errorf("removing previous layout: %w", rerr)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	// The layout package takes no context: cancellation is honoured before the
	// result is moved into place.
	if _, err := layout.Write(tmp, idx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !replace {
		return os.Rename(tmp, dest)
	}
	return swapDirs(tmp, dest)
}

// checkDest says whether dest exists and may be replaced, or why it may not.
func checkDest(dest string) (replace bool, err error) {
	fi, err := os.Lstat(dest)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.IsDir() {
		return false, errors.New("destination exists and is not a directory")
	}
	ents, err := os.ReadDir(dest)
	if err != nil {
		return false, err
	}
	if len(ents) == 0 {
		return true, nil
	}
	if fi, err := os.Stat(filepath.Join(dest, "oci-layout")); err == nil && fi.Mode().IsRegular() {
		return true, nil
	}
	return false, errors.New("refusing to replace a non-empty directory that is not an OCI layout")
}

// swapDirs puts dir a at b and b's old content at a: atomically where the kernel and
// file system support RENAME_EXCHANGE, else with two renames.
func swapDirs(a, b string) error {
	if err := exchange(a, b); err == nil {
		return nil
	}
	old := a + ".old"
	if err := os.Rename(b, old); err != nil {
		return err
	}
	if err := os.Rename(a, b); err != nil {
		if rerr := os.Rename(old, b); rerr != nil {
			return fmt.Errorf("%w (and restoring the previous layout: %v)", err, rerr)
		}
		return err
	}
	return os.Rename(old, a)
}

const layoutFile = `{"imageLayoutVersion":"1.0.0"}`

// maxIndexDepth bounds nested indexes in what is written.
const maxIndexDepth = 4

// writeTar streams the layout as a tar straight from the blobs, without an
// intermediate directory: the blobs of every image (and nested index) idx lists, each
// once, then index.json. Entries and their order are fixed, times are zero.
func writeTar(w io.Writer, idx v1.ImageIndex) error {
	tw := tar.NewWriter(w)
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)})
	}
	if err := writeFile(tw, "oci-layout", []byte(layoutFile)); err != nil {
		return err
	}
	if err := dir("blobs/"); err != nil {
		return err
	}
	if err := dir("blobs/sha256/"); err != nil {
		return err
	}
	bw := &blobWriter{tw: tw, seen: map[v1.Hash]bool{}}
	if err := bw.children(idx, 0); err != nil {
		return err
	}
	rawIndex, err := idx.RawManifest()
	if err != nil {
		return err
	}
	if err := writeFile(tw, "index.json", rawIndex); err != nil {
		return err
	}
	return tw.Close()
}

func writeFile(tw *tar.Writer, name string, dt []byte) error {
	return writeStream(tw, name, int64(len(dt)), bytes.NewReader(dt))
}

func writeStream(tw *tar.Writer, name string, size int64, r io.Reader) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	_, err := io.Copy(tw, r)
	return err
}

// blobWriter writes blobs into the layout tar, each digest once.
type blobWriter struct {
	tw   *tar.Writer
	seen map[v1.Hash]bool
}

func blobName(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

func (b *blobWriter) bytes(h v1.Hash, dt []byte) error {
	if b.seen[h] {
		return nil
	}
	b.seen[h] = true
	return writeFile(b.tw, blobName(h), dt)
}

// children writes the blobs of everything idx lists (not idx's own manifest).
func (b *blobWriter) children(idx v1.ImageIndex, depth int) error {
	if depth > maxIndexDepth {
		return fmt.Errorf("more than %d nested indexes", maxIndexDepth)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, d := range m.Manifests {
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return err
			}
			if err := b.children(child, depth+1); err != nil {
				return err
			}
			raw, err := child.RawManifest()
			if err != nil {
				return err
			}
			if err := b.bytes(d.Digest, raw); err != nil {
				return err
			}
		case d.MediaType.IsImage():
			img, err := idx.Image(d.Digest)
			if err != nil {
				return err
			}
			if err := b.image(img); err != nil {
				return err
			}
		default:
			return fmt.Errorf("index entry %s: unsupported media type %q", d.Digest, d.MediaType)
		}
	}
	return nil
}

// image writes img's layers, config and manifest.
func (b *blobWriter) image(img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		if b.seen[d] {
			continue
		}
		b.seen[d] = true
		size, err := l.Size()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		err = writeStream(b.tw, blobName(d), size, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("writing layer %s: %w", d, err)
		}
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	if err := b.bytes(cfgName, rawCfg); err != nil {
		return err
	}
	md, err := img.Digest()
	if err != nil {
		return err
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	return b.bytes(md, rawManifest)
}
