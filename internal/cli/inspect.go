package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/template"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/builderdev/builder/exporter/imagestore"
)

func newInspectCmd(g *globalOptions) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect IMAGE [IMAGE...]",
		Short: "Show the configuration and manifest of images as JSON",
		Long: `Show images in the store as a JSON array shaped like docker image inspect's, plus
the image manifest under "Manifest". IMAGE is a name or an image ID (prefix).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			st, err := openStore(ctx, g.root)
			if err != nil {
				return err
			}
			var out []any
			var errs []error
			for _, ref := range args {
				m, err := st.images.Find(ctx, ref)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				doc, err := inspectImage(ctx, st.images, m)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				out = append(out, doc)
			}
			if err := writeInspect(cmd.OutOrStdout(), format, out); err != nil {
				return err
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format output using a Go template (or 'json')")
	return cmd
}

// imageInspect is docker image inspect's document, with the manifest added.
type imageInspect struct {
	ID            string          `json:"Id"`
	RepoTags      []string        `json:"RepoTags"`
	RepoDigests   []string        `json:"RepoDigests"`
	Parent        string          `json:"Parent"`
	Comment       string          `json:"Comment"`
	Created       string          `json:"Created,omitempty"`
	DockerVersion string          `json:"DockerVersion"`
	Author        string          `json:"Author"`
	Config        json.RawMessage `json:"Config"`
	Architecture  string          `json:"Architecture"`
	Variant       string          `json:"Variant,omitempty"`
	Os            string          `json:"Os"`
	OsVersion     string          `json:"OsVersion,omitempty"`
	Size          int64           `json:"Size"`
	RootFS        struct {
		Type   string   `json:"Type"`
		Layers []string `json:"Layers"`
	} `json:"RootFS"`
	Metadata struct {
		LastTagTime string `json:"LastTagTime"`
	} `json:"Metadata"`
	Descriptor v1.Descriptor   `json:"Descriptor"`
	Manifest   json.RawMessage `json:"Manifest"`
}

func inspectImage(ctx context.Context, images *imagestore.Store, m imagestore.Match) (*imageInspect, error) {
	img, err := images.Image(ctx, m.Record)
	if err != nil {
		return nil, err
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return nil, err
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return nil, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Created      string          `json:"created"`
		Author       string          `json:"author"`
		Comment      string          `json:"comment"`
		Architecture string          `json:"architecture"`
		Variant      string          `json:"variant"`
		OS           string          `json:"os"`
		OSVersion    string          `json:"os.version"`
		Config       json.RawMessage `json:"config"`
		RootFS       struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(rawCfg, &cfg); err != nil {
		return nil, fmt.Errorf("decoding config of %s: %w", m.Record.ConfigDigest, err)
	}
	doc := &imageInspect{
		ID:           m.ID().String(),
		RepoTags:     []string{},
		RepoDigests:  []string{},
		Comment:      cfg.Comment,
		Created:      cfg.Created,
		Author:       cfg.Author,
		Config:       cfg.Config,
		Architecture: cfg.Architecture,
		Variant:      cfg.Variant,
		Os:           cfg.OS,
		OsVersion:    cfg.OSVersion,
		Size:         m.Record.Size,
		Descriptor:   v1.Descriptor{MediaType: mt, Digest: m.Record.ManifestDigest, Size: int64(len(rawManifest))},
		Manifest:     rawManifest,
	}
	if len(doc.Config) == 0 {
		doc.Config = json.RawMessage("{}")
	}
	doc.RootFS.Type, doc.RootFS.Layers = cfg.RootFS.Type, cfg.RootFS.DiffIDs
	if doc.RootFS.Layers == nil {
		doc.RootFS.Layers = []string{}
	}
	seenRepo := map[string]bool{}
	for _, n := range m.Names() {
		doc.RepoTags = append(doc.RepoTags, familiar(n))
		if repo := repoOf(n); !seenRepo[repo] {
			seenRepo[repo] = true
			doc.RepoDigests = append(doc.RepoDigests, familiar(repo)+"@"+m.Record.ManifestDigest.String())
		}
	}
	return doc, nil
}

// writeInspect prints docs as an indented JSON array, or each through the template
// format, which sees the same field names as the JSON.
func writeInspect(w io.Writer, format string, docs []any) error {
	if format == "" || format == "json" {
		if docs == nil {
			docs = []any{}
		}
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "    ")
		if err := enc.Encode(docs); err != nil {
			return err
		}
		_, err := w.Write(b.Bytes())
		return err
	}
	tmpl, err := template.New("format").Funcs(templateFuncs).Parse(expandEscapes(format))
	if err != nil {
		return fmt.Errorf("parsing --format template: %w", err)
	}
	for _, d := range docs {
		// Through JSON, so the template sees exactly the documented field names;
		// numbers stay json.Number so they print as integers.
		raw, err := json.Marshal(d)
		if err != nil {
			return err
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var v map[string]any
		if err := dec.Decode(&v); err != nil {
			return err
		}
		var b bytes.Buffer
		if err := tmpl.Execute(&b, v); err != nil {
			return fmt.Errorf("rendering --format: %w", err)
		}
		b.WriteByte('\n')
		if _, err := w.Write(b.Bytes()); err != nil {
			return err
		}
	}
	return nil
}
