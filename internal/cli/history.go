package cli

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/builderdev/builder/exporter/imagestore"
)

type historyOptions struct {
	noTrunc, quiet bool
	format         string
}

func newHistoryCmd(g *globalOptions) *cobra.Command {
	var o historyOptions
	cmd := &cobra.Command{
		Use:   "history IMAGE",
		Short: "Show the history of an image",
		Long: `Show the steps that made an image, newest first. SIZE is the compressed size of
the layer a step added.`,
		Args: cobra.ExactArgs(1),
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
			rows, err := imageHistory(ctx, st.images, m, o.noTrunc)
			if err != nil {
				return err
			}
			return writeHistory(cmd.OutOrStdout(), rows, o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.noTrunc, "no-trunc", false, "don't truncate output")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "only show image IDs")
	f.StringVar(&o.format, "format", "", "format output using a Go template, 'table', 'table TEMPLATE' or 'json'")
	return cmd
}

// historyRow is one line of builder history; its fields are the --format names.
type historyRow struct {
	ID           string
	CreatedAt    string
	CreatedSince string
	CreatedBy    string
	Size         string
	Comment      string
}

// imageHistory pairs the config's history with the manifest's layers (entries marked
// empty_layer have none), newest first. Only the newest entry is the image itself;
// the others are "<missing>", as with any image docker did not build locally.
func imageHistory(ctx context.Context, images *imagestore.Store, m imagestore.Match, noTrunc bool) ([]historyRow, error) {
	img, err := images.Image(ctx, m.Record)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	man, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	type entry struct {
		created     time.Time
		by, comment string
		size        int64
	}
	var entries []entry
	li := 0
	for _, h := range cf.History {
		e := entry{created: h.Created.Time, by: h.CreatedBy, comment: h.Comment}
		if !h.EmptyLayer && li < len(man.Layers) {
			e.size = man.Layers[li].Size
			li++
		}
		entries = append(entries, e)
	}
	// Layers without history (imported or foreign images) still get a line each.
	for ; li < len(man.Layers); li++ {
		entries = append(entries, entry{created: cf.Created.Time, size: man.Layers[li].Size})
	}
	rows := make([]historyRow, 0, len(entries))
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		id := "<missing>"
		if i == len(entries)-1 {
			id = imagestore.ShortID(m.ID())
			if noTrunc {
				id = m.ID().String()
			}
		}
		by := strings.ReplaceAll(e.by, "\n", " ")
		if !noTrunc && len([]rune(by)) > 45 {
			by = string([]rune(by)[:44]) + "…"
		}
		rows = append(rows, historyRow{
			ID:           id,
			CreatedAt:    createdAt(e.created),
			CreatedSince: ago(e.created),
			CreatedBy:    by,
			Size:         humanSize(e.size),
			Comment:      e.comment,
		})
	}
	return rows, nil
}

func writeHistory(w io.Writer, rows []historyRow, o historyOptions) error {
	format := o.format
	switch {
	case o.quiet:
		format = "{{.ID}}"
	case format == "" || format == "table":
		format = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
	}
	out := make([]any, len(rows))
	for i, r := range rows {
		out[i] = r
	}
	return writeFormatted(w, format, historyHeaders, out)
}

var historyHeaders = map[string]string{
	"ID": "IMAGE", "CreatedAt": "CREATED AT", "CreatedSince": "CREATED", "CreatedBy": "CREATED BY",
	"Size": "SIZE", "Comment": "COMMENT",
}
