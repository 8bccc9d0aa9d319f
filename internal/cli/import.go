package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
	"github.com/builderdev/builder/llb"
)

func newImportCmd(g *globalOptions) *cobra.Command {
	var changes []string
	var message, platform string
	cmd := &cobra.Command{
		Use:   "import [OPTIONS] FILE|- [REPOSITORY[:TAG]]",
		Short: "Create an image from a root filesystem tar",
		Long: `Create a one-layer image from a tar of a root filesystem (plain, gzip or zstd; "-"
reads stdin). --change applies Dockerfile instructions to the config: CMD,
ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR. Prints the image ID.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, err := importConfig(changes, platform)
			if err != nil {
				return err
			}
			st, err := openStore(ctx, g.root)
			if err != nil {
				return err
			}
			var in io.Reader = cmd.InOrStdin()
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("importing: %w", err)
				}
				defer f.Close()
				in = f
			}
			name := ""
			if len(args) == 2 {
				name = args[1]
			}
			if message == "" {
				message = "Imported from " + args[0]
			}
			id, err := st.importRootfs(ctx, in, cfg, message, name)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), id)
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&changes, "change", "c", nil, "apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR) to the image")
	cmd.Flags().StringVarP(&message, "message", "m", "", "commit message of the history entry")
	cmd.Flags().StringVar(&platform, "platform", "", "platform of the image (default this machine's, linux/"+runtime.GOARCH+")")
	return cmd
}

// importConfig is the config of an imported image before its layer is known.
func importConfig(changes []string, platform string) (*v1.ConfigFile, error) {
	cf := &v1.ConfigFile{OS: "linux", Architecture: runtime.GOARCH}
	if platform != "" {
		p, err := v1.ParsePlatform(platform)
		if err != nil {
			return nil, fmt.Errorf("--platform: %w", err)
		}
		cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	}
	for _, c := range changes {
		if err := applyChange(&cf.Config, c); err != nil {
			return nil, fmt.Errorf("--change %q: %w", c, err)
		}
	}
	return cf, nil
}

// applyChange applies one Dockerfile instruction to c, parsed by BuildKit's parser so
// JSON and shell forms, quoting and KEY=VALUE pairs mean what they mean in a Dockerfile.
func applyChange(c *v1.Config, change string) error {
	res, err := parser.Parse(strings.NewReader(change))
	if err != nil {
		return err
	}
	if len(res.AST.Children) != 1 {
		return fmt.Errorf("want exactly one instruction")
	}
	inst, err := instructions.ParseInstruction(res.AST.Children[0])
	if err != nil {
		return err
	}
	// Quotes and $VARs (from the ENV set so far) resolve as in a Dockerfile.
	if e, ok := inst.(instructions.SupportsSingleWordExpansion); ok {
		lex := shell.NewLex(res.EscapeToken)
		err := e.Expand(func(word string) (string, error) {
			w, _, err := lex.ProcessWord(word, shell.EnvsFromSlice(c.Env))
			return w, err
		})
		if err != nil {
			return err
		}
	}
	shellForm := func(l instructions.ShellDependantCmdLine) []string {
		if l.PrependShell {
			return []string{"/bin/sh", "-c", strings.Join(l.CmdLine, " ")}
		}
		return l.CmdLine
	}
	switch i := inst.(type) {
	case *instructions.CmdCommand:
		c.Cmd = shellForm(i.ShellDependantCmdLine)
	case *instructions.EntrypointCommand:
		c.Entrypoint = shellForm(i.ShellDependantCmdLine)
	case *instructions.EnvCommand:
		for _, kv := range i.Env {
			c.Env = llb.WithEnv(c.Env, kv.Key+"="+kv.Value)
		}
	case *instructions.LabelCommand:
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		for _, kv := range i.Labels {
			c.Labels[kv.Key] = kv.Value
		}
	case *instructions.ExposeCommand:
		if c.ExposedPorts == nil {
			c.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range i.Ports {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			c.ExposedPorts[p] = struct{}{}
		}
	case *instructions.UserCommand:
		c.User = i.User
	case *instructions.WorkdirCommand:
		c.WorkingDir = i.Path
	default:
		return fmt.Errorf("%s is not supported by import", strings.ToUpper(res.AST.Children[0].Value))
	}
	return nil
}

// importRootfs stores the tar in as the single layer of a new image with config cf and
// names it name (untagged if ""). It returns the image ID.
func (s *store) importRootfs(ctx context.Context, in io.Reader, cf *v1.ConfigFile, message, name string) (string, error) {
	known, err := s.knownLayers(ctx)
	if err != nil {
		return "", err
	}
	l, err := storeLayer(ctx, s.content, in, known)
	if err != nil {
		return "", fmt.Errorf("importing: %w", err)
	}
	now := time.Now().UTC()
	if sde := os.Getenv("SOURCE_DATE_EPOCH"); sde != "" {
		var sec int64
		if _, err := fmt.Sscan(sde, &sec); err == nil {
			now = time.Unix(sec, 0).UTC()
		}
	}
	cf.Created = v1.Time{Time: now}
	cf.RootFS = v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{mustHash(l.DiffID)}}
	cf.History = []v1.History{{Created: v1.Time{Time: now}, CreatedBy: "builder import", Comment: message}}
	rawCfg, err := json.Marshal(cf)
	if err != nil {
		return "", err
	}
	md, err := storeManifest(ctx, s, rawCfg, []cache.Layer{l})
	if err != nil {
		return "", err
	}
	var names []string
	if name != "" {
		names = []string{name}
	}
	if _, err := s.nameLoaded(ctx, md, names); err != nil {
		return "", err
	}
	return digest.FromBytes(rawCfg).String(), nil
}

func mustHash(d digest.Digest) v1.Hash {
	h, err := v1.NewHash(d.String())
	if err != nil {
		panic(fmt.Sprintf("digest %q from the content store does not parse: %v", d, err))
	}
	return h
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// storeLayer stores the layer tar stream r (gzip, zstd or plain) as a blob and returns
// it with its diff id, hashed in the same pass. Compressed layers are stored as they
// are; plain ones are compressed with pgzip, unless known already has a blob with the
// same diff id, which is then shared rather than stored twice.
func storeLayer(ctx context.Context, cs *content.Store, r io.Reader, known map[digest.Digest]cache.Layer) (cache.Layer, error) {
	br := bufio.NewReaderSize(content.ContextReader(ctx, r), 64<<10)
	magic, _ := br.Peek(len(zstdMagic))
	cw, err := cs.Writer(ctx)
	if err != nil {
		return cache.Layer{}, err
	}
	defer cw.Close()
	diffID := digest.Canonical.Digester()
	var mt string
	switch {
	case bytes.HasPrefix(magic, gzipMagic), bytes.HasPrefix(magic, zstdMagic):
		tee := io.TeeReader(br, cw)
		var zr io.Reader
		if bytes.HasPrefix(magic, gzipMagic) {
			mt = ocispec.MediaTypeImageLayerGzip
			gz, err := pgzip.NewReader(tee)
			if err != nil {
				return cache.Layer{}, fmt.Errorf("decompressing layer: %w", err)
			}
			defer gz.Close()
			zr = gz
		} else {
			mt = ocispec.MediaTypeImageLayerZstd
			zd, err := zstd.NewReader(tee)
			if err != nil {
				return cache.Layer{}, fmt.Errorf("decompressing layer: %w", err)
			}
			defer zd.Close()
			zr = zd
		}
		if _, err := io.Copy(diffID.Hash(), zr); err != nil {
			return cache.Layer{}, fmt.Errorf("decompressing layer: %w", err)
		}
		// The blob is everything, including bytes after the compressed stream.
		if _, err := io.Copy(io.Discard, tee); err != nil {
			return cache.Layer{}, err
		}
	default:
		mt = ocispec.MediaTypeImageLayerGzip
		gz := pgzip.NewWriter(cw)
		defer gz.Close()
		if _, err := io.Copy(io.MultiWriter(diffID.Hash(), gz), br); err != nil {
			return cache.Layer{}, fmt.Errorf("reading layer: %w", err)
		}
		if err := gz.Close(); err != nil {
			return cache.Layer{}, fmt.Errorf("compressing layer: %w", err)
		}
		if l, ok := known[diffID.Digest()]; ok && cs.Has(l.Digest) {
			return l, nil // cw is abandoned by the deferred Close
		}
	}
	size := cw.Size()
	d, err := cw.Commit(ctx, size, "")
	if err != nil {
		return cache.Layer{}, err
	}
	return cache.Layer{DiffID: diffID.Digest(), Digest: d, Size: size, MediaType: mt}, nil
}
