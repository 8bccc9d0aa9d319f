// Package dockertar writes an image as a `docker save` tarball (manifest.json,
// repositories, config and compressed layer blobs), which `docker load`,
// `podman load` and `skopeo copy docker-archive:` read.
package dockertar

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

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
	refs := make(map[name.Reference]v1.Image, len(tags))
	repos := map[string]map[string]string{}
	cfgName, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("writing docker tarball %s: %w", dest, err)
	}
	for _, t := range tags {
		n, err := registry.Normalize(t)
		if err != nil {
			return fmt.Errorf("writing docker tarball %s: %w", dest, err)
		}
		tag, err := name.NewTag(n)
		if err != nil {
			return fmt.Errorf("writing docker tarball %s: tag %q: a docker tarball needs a name:tag without digest", dest, t)
		}
		refs[tag] = img
		repo := strings.TrimSuffix(n, ":"+tag.TagStr())
		if repos[repo] == nil {
			repos[repo] = map[string]string{}
		}
		// Only the legacy (pre-manifest.json) loader reads this file; it names the
		// image by its ID, the config digest.
		repos[repo][tag.TagStr()] = cfgName.Hex
	}
	if len(refs) == 0 {
		// The reference is only a map key; untagged images are written without RepoTags.
		d, err := name.NewDigest("untagged@" + cfgName.String())
		if err != nil {
			return fmt.Errorf("writing docker tarball %s: %w", dest, err)
		}
		refs[d] = img
	}

	err = exporter.WriteFile(ctx, dest, func(f *os.File) error {
		if err := tarball.MultiRefWrite(refs, exporter.CancelWriter(ctx, f)); err != nil {
			return err
		}
		if len(repos) == 0 {
			return nil
		}
		dt, err := json.Marshal(repos)
		if err != nil {
			return err
		}
		return appendEntry(f, "repositories", dt)
	})
	if err != nil {
		return fmt.Errorf("writing docker tarball %s: %w", dest, err)
	}
	return nil
}

// appendEntry adds one file to the finished tar f by writing over its end-of-archive
// marker (two zero blocks, which is all archive/tar writes on Close) and ending the
// archive again after it.
func appendEntry(f *os.File, name string, dt []byte) error {
	const footer = 2 * 512
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	tail := make([]byte, footer)
	if end < footer {
		return errors.New("appending to tarball: archive too short")
	}
	if _, err := f.ReadAt(tail, end-footer); err != nil {
		return fmt.Errorf("appending to tarball: %w", err)
	}
	if !bytes.Equal(tail, make([]byte, footer)) {
		return errors.New("appending to tarball: archive does not end with a tar footer")
	}
	if _, err := f.Seek(end-footer, io.SeekStart); err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(dt)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(dt); err != nil {
		return err
	}
	return tw.Close()
}
