package cli

import (
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/builderdev/builder/exporter"
	"github.com/builderdev/builder/internal/registry"
)

func newPullCmd(g *globalOptions) *cobra.Command {
	var (
		insecure []string
		platform string
	)
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an image from a registry into the store",
		Long: `Pull REF (NAME[:TAG] or NAME[:TAG]@DIGEST) into the store: manifest, config and
every layer. The image is named NAME:TAG; pulled by digest alone it is stored
untagged (listed as <none>). From a multi-platform index the image for --platform
is taken (default: linux on this machine's architecture).`,
		Example: `  builder pull 127.0.0.1:5000/app:1.0
  builder pull --platform linux/arm64 registry.example.com/base:latest`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			ref, err := registry.Normalize(args[0])
			if err != nil {
				return err
			}
			opts := []registry.Option{registry.WithInsecureRegistries(insecure...)}
			if platform != "" {
				p, err := v1.ParsePlatform(platform)
				if err != nil {
					return fmt.Errorf("parsing --platform: %w", err)
				}
				opts = append(opts, registry.WithPlatform(*p))
			}
			st, err := openStore(ctx, g.root)
			if err != nil {
				return err
			}
			reg, err := st.registry(opts...)
			if err != nil {
				return err
			}
			r, err := reg.Pull(ctx, ref)
			if err != nil {
				return err
			}
			img, err := exporter.Stored(ctx, st.content, r.ManifestDigest)
			if err != nil {
				return fmt.Errorf("pulling %s: %w", ref, err)
			}
			// A digest does not name a local image; the tag, if any, does.
			name, _, _ := strings.Cut(ref, "@")
			if !strings.Contains(ref, "@") || hasTag(name) {
				if _, err := st.images.Put(ctx, name, img); err != nil {
					return err
				}
			} else {
				name = ref
				if _, err := st.images.Put(ctx, "", img); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Digest: %s\nStatus: Downloaded image for %s\n%s\n", r.ManifestDigest, name, name)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&insecure, "insecure-registry", nil, "registry host reached over plain http or with an unverified certificate")
	cmd.Flags().StringVar(&platform, "platform", "", "platform to take from a multi-platform image (os/arch[/variant])")
	return cmd
}

// hasTag reports whether a normalised name without digest carries a tag.
func hasTag(name string) bool {
	return strings.LastIndex(name, ":") > strings.LastIndex(name, "/")
}
