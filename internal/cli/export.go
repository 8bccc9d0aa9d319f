package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/builderdev/builder/exporter"
)

func newExportCmd(g *globalOptions) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "export [-o FILE] IMAGE",
		Short: "Write the flattened filesystem of an image as a tar",
		Long: `Write the root filesystem of an image as one tar: its layers applied in order,
deleted files (whiteouts) left out. Without -o (or with -o -) the tar goes to stdout,
unless stdout is a terminal.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			toStdout := output == "" || output == "-"
			if toStdout {
				if f, ok := cmd.OutOrStdout().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					return errors.New("cowardly refusing to write a tar to a terminal. Use the -o flag or redirect")
				}
			}
			st, err := openStore(ctx, g.root)
			if err != nil {
				return err
			}
			m, err := st.images.Find(ctx, args[0])
			if err != nil {
				return err
			}
			img, err := st.images.Image(ctx, m.Record)
			if err != nil {
				return err
			}
			if toStdout {
				return exportFS(ctx, cmd.OutOrStdout(), img)
			}
			err = exporter.WriteFile(ctx, output, func(f *os.File) error { return exportFS(ctx, f, img) })
			if err != nil {
				return fmt.Errorf("exporting to %s: %w", output, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to FILE instead of stdout")
	return cmd
}

// exportFS writes img's flattened filesystem to w. go-containerregistry's Extract reads
// the layers top down, so each path is written once, as its topmost layer has it.
func exportFS(ctx context.Context, w io.Writer, img v1.Image) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	if _, err := io.Copy(exporter.CancelWriter(ctx, w), rc); err != nil {
		return fmt.Errorf("exporting filesystem: %w", err)
	}
	return nil
}
