package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/builderdev/builder/internal/registry"
)

func newPushCmd(g *globalOptions) *cobra.Command {
	var insecure []string
	cmd := &cobra.Command{
		Use:   "push IMAGE [REF]",
		Short: "Push an image from the store to a registry",
		Long: `Push IMAGE (a name or an image ID in the store) to REF, or to its own name when
REF is omitted. Blobs the repository has are skipped; blobs known to be in another
repository of the same registry are mounted from there rather than uploaded.
Credentials come from builder login / docker login.`,
		Example: `  builder push registry.example.com/app:1.0
  builder push app:dev 127.0.0.1:5000/app:dev`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			st, err := openStore(ctx, g.root)
			if err != nil {
				return err
			}
			m, err := st.images.Find(ctx, args[0])
			if err != nil {
				return err
			}
			target := m.Name
			if len(args) == 2 {
				if target, err = registry.Normalize(args[1]); err != nil {
					return err
				}
			}
			if target == "" {
				return fmt.Errorf("image %s has no name: give the reference to push it to (builder push %s REF)", args[0], args[0])
			}
			img, err := st.images.Image(ctx, m.Record)
			if err != nil {
				return err
			}
			reg, err := st.registry(registry.WithInsecureRegistries(insecure...))
			if err != nil {
				return err
			}
			if err := reg.Push(ctx, target, img); err != nil {
				return err
			}
			d, err := img.Digest()
			if err != nil {
				return err
			}
			size, err := img.Size()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: digest: %s size: %d\n", target, d, size)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&insecure, "insecure-registry", nil, "registry host reached over plain http or with an unverified certificate")
	return cmd
}
