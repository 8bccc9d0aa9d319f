// Package dockertar writes an image as a `docker save` tarball (config, compressed
// layer blobs, manifest.json and the legacy repositories file), which `docker load`,
// `podman load` and `skopeo copy docker-archive:` read. The tarball is a function of
// the image and its tags only (fixed entry order, zero times, sorted tags), and can be
// streamed: nothing is seeked.
package dockertar

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/builderdev/builder/exporter"
	"github.com/builderdev/builder/internal/registry"
)

// Config says where the tarball goes and which names it gives the image.
type Config struct {
	// Dest is the tarball's path; it is replaced only when the export succeeds.
	Dest string
	// Tags are image names ("app", "reg:5000/app:v1"); normalised like Docker does.
	// With none the image loads untagged.
	Tags []string
}

var _ exporter.Exporter = Config{}

// Export writes img as configured.
func (c Config) Export(ctx context.Context, img v1.Image) error {
	return Write(ctx, img, c.Tags, c.Dest)
}

// Write writes img to dest in docker-save format under the given tags. The tarball
// is written beside dest under a temporary name and renamed into place at the end.
func Write(ctx context.Context, img v1.Image, tags []string, dest string) error {
	err := exporter.WriteFile(ctx, dest, func(f *os.File) error {
		return WriteTo(ctx, img, tags, f)
	})
	if err != nil {
		return fmt.Errorf("writing docker tarball %s: %w", dest, err)
	}
	return nil
}

// WriteTo streams img in docker-save format under the given tags to w (a pipe or
// stdout is fine: nothing is seeked). The output depends only on the image and the
// tags: entries are in a fixed order with zero times, tags sorted.
func WriteTo(ctx context.Context, img v1.Image, tags []string, w io.Writer) error {
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	repos := map[string]map[string]string{}
	var repoTags []string
	for _, t := range tags {
		n, err := registry.Normalize(t)
		if err != nil {
			return err
		}
		tag, err := name.NewTag(n)
		if err != nil {
			return fmt.Errorf("tag %q: a docker tarball needs a name:tag without digest", t)
		}
		if slices.Contains(repoTags, n) {
			continue
		}
		repoTags = append(repoTags, n)
		repo := strings.TrimSuffix(n, ":"+tag.TagStr())
		if repos[repo] == nil {
			repos[repo] = map[string]string{}
		}
		// Only the legacy (pre-manifest.json) loader reads this file; it names the
		// image by its ID, the config digest.
		repos[repo][tag.TagStr()] = cfgName.Hex
	}
	slices.Sort(repoTags)

	tw := tar.NewWriter(exporter.CancelWriter(ctx, w))
	file := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		n, err := io.Copy(tw, r)
		if err == nil && n != size {
			err = fmt.Errorf("%s: wrote %d bytes, expected %d", name, n, size)
		}
		return err
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	if err := file(cfgName.String(), int64(len(rawCfg)), bytes.NewReader(rawCfg)); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	layerFiles := make([]string, len(layers))
	written := map[string]bool{}
	for i, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		mt, err := l.MediaType()
		if err != nil {
			return err
		}
		layerFiles[i] = d.Hex + layerExtension(mt)
		if written[layerFiles[i]] {
			continue
		}
		written[layerFiles[i]] = true
		size, err := l.Size()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		err = file(layerFiles[i], size, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("writing layer %s: %w", d, err)
		}
	}
	manifest, err := json.Marshal(tarball.Manifest{{Config: cfgName.String(), RepoTags: repoTags, Layers: layerFiles}})
	if err != nil {
		return err
	}
	if err := file("manifest.json", int64(len(manifest)), bytes.NewReader(manifest)); err != nil {
		return err
	}
	if len(repos) > 0 {
		dt, err := json.Marshal(repos)
		if err != nil {
			return err
		}
		if err := file("repositories", int64(len(dt)), bytes.NewReader(dt)); err != nil {
			return err
		}
	}
	return tw.Close()
}

// layerExtension names layer files the way go-containerregistry's tarball package
// does, which is what docker load, podman load and skopeo read.
func layerExtension(mt types.MediaType) string {
	switch mt {
	case types.OCILayerZStd:
		return ".tar.zst"
	case types.OCIUncompressedLayer, types.OCIUncompressedRestrictedLayer, types.DockerUncompressedLayer:
		return ".tar"
	}
	return ".tar.gz"
}
