// Package ocilayout writes an image as an OCI image layout, as a directory or as a
// tar of one (what BuildKit's type=oci output and skopeo's oci-archive: read).
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
	if c.Tar {
		err = exporter.WriteFile(ctx, c.Dest, func(f *os.File) error {
			return writeTar(exporter.CancelWriter(ctx, f), idx, img)
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
	if err := writeTar(exporter.CancelWriter(ctx, w), idx, img); err != nil {
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
	annotations := maps.Clone(c.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	if _, ok := annotations[ocispec.AnnotationCreated]; !ok && !cf.Created.IsZero() {
		annotations[ocispec.AnnotationCreated] = cf.Created.UTC().Format(time.RFC3339)
	}
	base := v1.Descriptor{Platform: cf.Platform()}
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
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: d})
	}
	if len(adds) == 0 {
		d := base
		if len(annotations) > 0 {
			d.Annotations = annotations
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: d})
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

// writeTar streams the layout as a tar straight from the blobs, without an
// intermediate directory. Entries and their order are fixed, times are zero.
func writeTar(w io.Writer, idx v1.ImageIndex, img v1.Image) error {
	tw := tar.NewWriter(w)
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)})
	}
	file := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	bytesFile := func(name string, dt []byte) error { return file(name, int64(len(dt)), bytes.NewReader(dt)) }
	blob := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

	if err := bytesFile("oci-layout", []byte(layoutFile)); err != nil {
		return err
	}
	if err := dir("blobs/"); err != nil {
		return err
	}
	if err := dir("blobs/sha256/"); err != nil {
		return err
	}
	seen := map[v1.Hash]bool{}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		if seen[d] {
			continue
		}
		seen[d] = true
		size, err := l.Size()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		err = file(blob(d), size, rc)
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
	if err := bytesFile(blob(cfgName), rawCfg); err != nil {
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
	if err := bytesFile(blob(md), rawManifest); err != nil {
		return err
	}
	rawIndex, err := idx.RawManifest()
	if err != nil {
		return err
	}
	if err := bytesFile("index.json", rawIndex); err != nil {
		return err
	}
	return tw.Close()
}
