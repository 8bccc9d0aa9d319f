// Package cli is builder's command line: cobra commands, one file each, wired to the
// frontend, solver, store and exporters.
package cli

import (
	"os"

	"github.com/spf13/cobra"
)

// DefaultRoot is where the store lives when neither --root nor BUILDER_ROOT says otherwise.
const DefaultRoot = "/var/lib/builder"

type globalOptions struct {
	root          string
	gcKeepStorage string
}

// New returns the root command.
func New() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:           "builder",
		Short:         "Build container images from Dockerfiles, without a daemon",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	def := DefaultRoot
	if env := os.Getenv("BUILDER_ROOT"); env != "" {
		def = env
	}
	root.PersistentFlags().StringVar(&g.root, "root", def, "directory of the image store and build cache (env BUILDER_ROOT)")
	root.PersistentFlags().StringVar(&g.gcKeepStorage, "gc-keep-storage", "", "after a build, remove least recently used build cache until the store takes at most SIZE (env "+gcKeepStorageEnv+"; default 10% of the filesystem, at most 20GB; 0 turns it off)")
	root.AddCommand(newBuildCmd(g), newImagesCmd(g))
	root.AddCommand(newLoginCmd(g), newLogoutCmd(g), newPushCmd(g), newPullCmd(g))
	root.AddCommand(newInspectCmd(g), newHistoryCmd(g), newTagCmd(g), newRmiCmd(g), newSaveCmd(g),
		newLoadCmd(g), newExportCmd(g), newImportCmd(g), newRunCmd(g), newDuCmd(g), newPruneCmd(g))
	return root
}
