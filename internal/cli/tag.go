package cli

import (
	"github.com/spf13/cobra"
)

func newTagCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
		Short: "Give an image in the store another name",
		Long: `Give an image in the store another name. SOURCE_IMAGE is a name or an image ID
(prefix). If TARGET_IMAGE named another image, that image keeps its other names, or
stays in the store untagged.`,
		Args: cobra.ExactArgs(2),
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
			return st.images.Tag(ctx, m.Record, args[1])
		},
	}
}
