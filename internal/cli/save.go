package cli

import (
	"archive/tar"
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
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"golang.org/x/term"

	"github.com/builderdev/builder/exporter"
	"github.com/builderdev/builder/exporter/imagestore"
)

func newSaveCmd(g *globalOptions) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "save [-o FILE] IMAGE [IMAGE...]",
		Short: "Write images to a docker-save tar archive",
		Long: `Write one or more images to a tar archive in docker save format (manifest.json and
repositories), which builder load, docker load, podman load and skopeo read. Images
named by name are saved under that name; images named by ID are saved with all their
names. Without -o the archive goes to stdout, unless stdout is a terminal.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if output == "" || output == "-" {
				if f, ok := cmd.OutOrStdout().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					return errors.New("cowardly refusing to save to a terminal. Use the -o flag or redirect")
				}
			}
			st, err := openStore(ctx, g.root)
			if err != nil {
				return err
			}
			refs, repos, err := saveRefs(ctx, st.images, args)
			if err != nil {
				return err
			}
			if output == "" || output == "-" {
				return writeDockerArchive(ctx, cmd.OutOrStdout(), refs, repos)
			}
			err = exporter.WriteFile(ctx, output, func(f *os.File) error {
				return writeDockerArchive(ctx, f, refs, repos)
			})
			if err != nil {
				return fmt.Errorf("saving to %s: %w", output, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to FILE instead of stdout")
	return cmd
}

// saveRefs maps each name to save to its image (one v1.Image value per manifest, which
// is how go-containerregistry groups the names of one image) and builds the legacy
// repositories file (repository → tag → image id).
func saveRefs(ctx context.Context, images *imagestore.Store, args []string) (map[name.Reference]v1.Image, map[string]map[string]string, error) {
	refs := map[name.Reference]v1.Image{}
	repos := map[string]map[string]string{}
	byManifest := map[v1.Hash]v1.Image{}
	for _, arg := range args {
		m, err := images.Find(ctx, arg)
		if err != nil {
			return nil, nil, err
		}
		recs := m.Records
		if m.Name != "" {
			recs = []imagestore.Record{m.Record}
		}
		for _, rec := range recs {
			img, ok := byManifest[rec.ManifestDigest]
			if !ok {
				if img, err = images.Image(ctx, rec); err != nil {
					return nil, nil, err
				}
				byManifest[rec.ManifestDigest] = img
			}
			if rec.Name == "" {
				// Only a map key: images without a name are written without RepoTags.
				d, err := name.NewDigest("untagged@" + rec.ConfigDigest.String())
				if err != nil {
					return nil, nil, err
				}
				refs[d] = img
				continue
			}
			tag, err := name.NewTag(rec.Name)
			if err != nil {
				return nil, nil, fmt.Errorf("saving %s: %w", rec.Name, err)
			}
			refs[tag] = img
			repo := familiar(strings.TrimSuffix(rec.Name, ":"+tag.TagStr()))
			if repos[repo] == nil {
				repos[repo] = map[string]string{}
			}
			repos[repo][tag.TagStr()] = rec.ConfigDigest.Hex
		}
	}
	return refs, repos, nil
}

// writeDockerArchive streams the docker-save tarball of refs to w: go-containerregistry
// writes manifest.json, configs and layers (each layer once), and the repositories file
// is added before the end of the archive.
func writeDockerArchive(ctx context.Context, w io.Writer, refs map[name.Reference]v1.Image, repos map[string]map[string]string) error {
	pr, pw := io.Pipe()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := tarball.MultiRefWrite(refs, exporter.CancelWriter(ctx, pw))
		pw.CloseWithError(err)
		return err
	})
	g.Go(func() error {
		err := retar(w, pr, func(tw *tar.Writer) error {
			if len(repos) == 0 {
				return nil
			}
			dt, err := json.Marshal(repos)
			if err != nil {
				return err
			}
			if err := tw.WriteHeader(&tar.Header{Name: "repositories", Mode: 0o644, Size: int64(len(dt)), Typeflag: tar.TypeReg}); err != nil {
				return err
			}
			_, err = tw.Write(dt)
			return err
		})
		// Unblocks the writer if the copy failed half-way.
		pr.CloseWithError(err)
		return err
	})
	return g.Wait()
}

// retar copies the tar stream r to w entry by entry, then lets extra add entries
// before the archive is closed.
func retar(w io.Writer, r io.Reader, extra func(*tar.Writer) error) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	// Drain the footer so the writer side finishes.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	if err := extra(tw); err != nil {
		return err
	}
	return tw.Close()
}
