package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/spf13/cobra"

	"github.com/builderdev/builder/exporter/imagestore"
	"github.com/builderdev/builder/internal/registry"
)

type imagesOptions struct {
	quiet, digests, noTrunc bool
	format                  string
}

func newImagesCmd(g *globalOptions) *cobra.Command {
	var o imagesOptions
	cmd := &cobra.Command{
		Use:   "images [REPOSITORY[:TAG]]",
		Short: "List images in the local store",
		Long: `List images in the local store, newest first.

SIZE is the size of the image's blobs as stored: its compressed layers and its config
(Docker shows the unpacked size, which would mean reading every layer).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore(cmd.Context(), g.root)
			if err != nil {
				return err
			}
			recs, err := st.images.List(cmd.Context())
			if err != nil {
				return err
			}
			if len(args) == 1 {
				if recs, err = filterImages(recs, args[0]); err != nil {
					return err
				}
			}
			return writeImages(cmd.OutOrStdout(), recs, o)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.quiet, "quiet", "q", false, "only show image IDs")
	f.BoolVar(&o.digests, "digests", false, "show digests")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "don't truncate output")
	f.StringVar(&o.format, "format", "", "format output using a Go template, 'table', 'table TEMPLATE' or 'json'")
	return cmd
}

// filterImages keeps the records of repository ref (any tag) or, when ref has a tag,
// of exactly that name.
func filterImages(recs []imagestore.Record, ref string) ([]imagestore.Record, error) {
	n, err := registry.Normalize(ref)
	if err != nil {
		return nil, err
	}
	hasTag := strings.LastIndex(ref, ":") > strings.LastIndex(ref, "/")
	var out []imagestore.Record
	for _, r := range recs {
		if r.Name == "" {
			continue
		}
		if (hasTag && r.Name == n) || (!hasTag && repoOf(r.Name) == repoOf(n)) {
			out = append(out, r)
		}
	}
	return out, nil
}

// imageRow is one line of builder images; its fields are the --format names.
type imageRow struct {
	Repository   string
	Tag          string
	ID           string
	Digest       string
	CreatedAt    string
	CreatedSince string
	Size         string
}

func writeImages(w io.Writer, recs []imagestore.Record, o imagesOptions) error {
	// Newest first, as docker images; names keep List's order within one time.
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Created.After(recs[j].Created) })
	rows := make([]any, 0, len(recs))
	for _, r := range recs {
		repo, tag := "<none>", "<none>"
		if r.Name != "" {
			repo, tag = splitTag(r.Name)
		}
		id := imagestore.ShortID(r.ConfigDigest)
		if o.noTrunc {
			id = r.ConfigDigest.String()
		}
		rows = append(rows, imageRow{
			Repository:   repo,
			Tag:          tag,
			ID:           id,
			Digest:       r.ManifestDigest.String(),
			CreatedAt:    createdAt(r.Created),
			CreatedSince: ago(r.Created),
			Size:         humanSize(r.Size),
		})
	}
	format := o.format
	switch {
	case o.quiet:
		format = "{{.ID}}"
	case format == "" || format == "table":
		format = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
		if o.digests {
			format = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
		}
	}
	return writeFormatted(w, format, imageHeaders, rows)
}

var imageHeaders = map[string]string{
	"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Digest": "DIGEST",
	"CreatedAt": "CREATED AT", "CreatedSince": "CREATED", "Size": "SIZE",
}

// writeFormatted prints rows the way docker's --format does: "json" prints each row as
// a JSON object on its own line, "table TEMPLATE" prints aligned columns under a
// header row (the template run on headers), and any other text is a Go template run
// once per row.
func writeFormatted(w io.Writer, format string, headers map[string]string, rows []any) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	table := false
	if rest, ok := strings.CutPrefix(format, "table"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
		table, format = true, strings.TrimLeft(rest, " \t")
	}
	format = expandEscapes(format)
	tmpl, err := template.New("format").Funcs(templateFuncs).Parse(format)
	if err != nil {
		return fmt.Errorf("parsing --format template: %w", err)
	}
	var buf bytes.Buffer
	if table {
		if err := tmpl.Execute(&buf, headers); err != nil {
			return fmt.Errorf("rendering --format header: %w", err)
		}
		buf.WriteByte('\n')
	}
	for _, r := range rows {
		if err := tmpl.Execute(&buf, r); err != nil {
			return fmt.Errorf("rendering --format: %w", err)
		}
		buf.WriteByte('\n')
	}
	if !table {
		_, err := w.Write(buf.Bytes())
		return err
	}
	tw := tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
	if _, err := tw.Write(buf.Bytes()); err != nil {
		return err
	}
	return tw.Flush()
}

// expandEscapes turns the \t and \n a shell passes literally into tabs and newlines,
// as docker does for --format.
func expandEscapes(s string) string {
	return strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(s)
}

// templateFuncs are the functions docker offers in --format templates.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return "", err
		}
		return strings.TrimSpace(b.String()), nil
	},
	"join":  strings.Join,
	"split": strings.Split,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"title": func(s string) string {
		if s == "" {
			return s
		}
		return strings.ToUpper(s[:1]) + s[1:]
	},
	"truncate": func(s string, n int) string {
		if len(s) > n {
			return s[:n]
		}
		return s
	},
	"pad": func(s string, before, after int) string {
		return strings.Repeat(" ", before) + s + strings.Repeat(" ", after)
	},
	"println": fmt.Sprintln,
}

// splitTag splits a normalised name into repository and tag, shortening Docker Hub names
// the way docker images does.
func splitTag(name string) (string, string) {
	repo, tag := name, ""
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		repo, tag = name[:i], name[i+1:]
	}
	return familiar(repo), tag
}

// familiar shortens a normalised Docker Hub name as docker shows it: "app:v1" for
// "docker.io/library/app:v1", "user/app" for "docker.io/user/app".
func familiar(name string) string {
	name = strings.TrimPrefix(name, "docker.io/")
	return strings.TrimPrefix(name, "library/")
}

// repoOf is a normalised name without its tag.
func repoOf(name string) string {
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name[:i]
	}
	return name
}

func createdAt(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05 -0700 MST")
}

// ago is docker's "CREATED" column: "5 minutes ago", "2 weeks ago".
func ago(t time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	d := time.Since(t)
	if d < 0 {
		d = 0
	}
	var s string
	switch {
	case d < time.Second:
		s = "Less than a second"
	case d < time.Minute:
		s = plural(int(d.Seconds()), "second")
	case d < time.Hour:
		s = plural(int(d.Minutes()), "minute")
	case d < 48*time.Hour:
		s = plural(int(d.Hours()), "hour")
	case d < 14*24*time.Hour:
		s = plural(int(d.Hours()/24), "day")
	case d < 60*24*time.Hour:
		s = plural(int(d.Hours()/24/7), "week")
	case d < 2*365*24*time.Hour:
		s = plural(int(d.Hours()/24/30), "month")
	default:
		s = plural(int(d.Hours()/24/365), "year")
	}
	return s + " ago"
}

func plural(n int, unit string) string {
	if n == 1 {
		if unit == "hour" {
			return "About an hour"
		}
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// humanSize is docker's size format: decimal units, three significant digits.
func humanSize(n int64) string {
	const unit = 1000
	v, i := float64(n), 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.3g%s", v, []string{"B", "kB", "MB", "GB", "TB"}[i])
}
