package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/remotecache"
	"github.com/builderdev/builder/frontend/dockerfile"
	"github.com/builderdev/builder/frontend/platform"
	"github.com/builderdev/builder/internal/progress"
	"github.com/builderdev/builder/internal/registry"
	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
	"github.com/builderdev/builder/solver/ops"
)

// buildOptions are the flags of `builder build`.
type buildOptions struct {
	tags       []string
	file       string
	buildArgs  []string
	target     string
	noCache    bool
	progress   string
	outputs    []string
	printLLB   bool
	network    string
	insecure   []string
	pull       bool
	secrets    []string
	ssh        []string
	contexts   []string
	labels     []string
	metadata   string
	iidFile    string
	platforms  []string
	cacheTo    []string
	cacheFrom  []string
	contextDir string
}

func newBuildCmd(g *globalOptions) *cobra.Command {
	o := &buildOptions{}
	cmd := &cobra.Command{
		Use:   "build [OPTIONS] CONTEXT|-",
		Short: "Build an image from a Dockerfile",
		Example: `  builder build -t helloworld .
  builder build -f build/Dockerfile --target test --build-arg GO_VERSION=1.26 .
  builder build --output type=docker,dest=app.tar -t app:1 .
  builder build --output type=oci,dest=layout,tar=false .
  builder build --output type=image,name=127.0.0.1:5000/app:1,push=true .
  builder build --secret id=npmrc,src=$HOME/.npmrc --ssh default -t app .
  builder build --build-context base=docker-image://127.0.0.1:5000/base:1 .
  builder build --platform linux/amd64,linux/arm64 --output type=image,name=127.0.0.1:5000/app:1,push=true .
  builder build -f - . < Dockerfile.dev
  builder build - < Dockerfile            # no context`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.contextDir = args[0]
			return runBuild(cmd.Context(), g, o, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.tags, "tag", "t", nil, "name (and optionally tag) of the image in the local store, name:tag")
	f.StringVarP(&o.file, "file", "f", "", "Dockerfile path (default CONTEXT/Dockerfile)")
	f.StringArrayVar(&o.buildArgs, "build-arg", nil, "build-time variable KEY=VALUE (KEY alone takes the value from the environment)")
	f.StringVar(&o.target, "target", "", "build this stage instead of the last one")
	f.BoolVar(&o.noCache, "no-cache", false, "run every step, ignoring the build cache")
	f.StringVar(&o.progress, "progress", "auto", "progress output: auto, plain, tty or quiet")
	f.StringArrayVarP(&o.outputs, "output", "o", nil, "output: type=image,name=REF[,push=true] | type=registry,name=REF | type=docker,dest=PATH|- | type=oci,dest=PATH|-[,tar=false] | type=local,dest=DIR | type=tar,dest=PATH|-; image attributes: compression=gzip|zstd|uncompressed, compression-level=N, force-compression=true, oci-mediatypes=true|false, annotation.KEY=VALUE")
	f.StringVar(&o.metadata, "metadata-file", "", "write the build result's metadata (image digest, config digest, names) to FILE as JSON")
	f.StringVar(&o.iidFile, "iidfile", "", "write the image ID (config digest) to FILE")
	f.BoolVar(&o.printLLB, "print-llb", false, "print the LLB graph as JSON and stop (nothing is run)")
	f.StringVar(&o.network, "network", "default", "network mode for RUN: default (host) or none")
	f.StringArrayVar(&o.insecure, "insecure-registry", nil, "registry host reached over plain http (localhost and 127.0.0.1 always are)")
	f.BoolVar(&o.pull, "pull", false, "always look up the base images' tags in their registry")
	f.StringArrayVar(&o.secrets, "secret", nil, "secret for RUN --mount=type=secret: id=ID[,src=FILE|,env=VAR]")
	f.StringArrayVar(&o.ssh, "ssh", nil, "ssh agent for RUN --mount=type=ssh: default|ID[=SOCKET] (default: $SSH_AUTH_SOCK)")
	f.StringArrayVar(&o.contexts, "build-context", nil, "named context: NAME=DIR | NAME=docker-image://REF | NAME=oci-layout://PATH[:TAG|@DIGEST]")
	f.StringArrayVar(&o.labels, "label", nil, "image label KEY=VALUE (overrides the Dockerfile's)")
	f.StringArrayVar(&o.platforms, "platform", nil, "target platform os/arch[/variant], comma-separated or repeated (default: this machine's, "+platform.Format(platform.Host())+"); several make a multi-platform index, and RUN for a foreign platform needs qemu-user-static")
	f.StringArrayVar(&o.cacheTo, "cache-to", nil, cacheToHelp)
	f.StringArrayVar(&o.cacheFrom, "cache-from", nil, "import build cache, tried in order: type=registry,ref=REF | type=local,src=DIR | IMAGE (inline cache)")
	return cmd
}

func runBuild(ctx context.Context, g *globalOptions, o *buildOptions, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	mode, err := progress.ParseMode(o.progress)
	if err != nil {
		return err
	}
	outputs, err := parseOutputs(o.outputs)
	if err != nil {
		return err
	}
	cacheTo, err := parseCacheSpecs(o.cacheTo, true)
	if err != nil {
		return err
	}
	cacheFrom, err := parseCacheSpecs(o.cacheFrom, false)
	if err != nil {
		return err
	}
	platforms, err := parsePlatforms(o.platforms)
	if err != nil {
		return err
	}
	if err := checkPlatformOutputs(platforms, o.tags, outputs); err != nil {
		return err
	}
	for _, t := range o.tags {
		if _, err := registry.Normalize(t); err != nil {
			return fmt.Errorf("tag %q: %w", t, err)
		}
	}
	args, err := parseBuildArgs(o.buildArgs)
	if err != nil {
		return err
	}
	// As buildx and buildctl do, the client's SOURCE_DATE_EPOCH is a build arg unless
	// --build-arg gives one.
	if v, ok := os.LookupEnv(sourceDateEpoch); ok && v != "" {
		if _, set := args[sourceDateEpoch]; !set {
			args[sourceDateEpoch] = v
		}
	}
	network := o.network
	switch network {
	case "default", llb.NetworkHost:
		network = llb.NetworkHost
	case llb.NetworkNone:
	default:
		return fmt.Errorf("--network %q: want default, host or none", o.network)
	}
	in, err := readBuildInputs(o, stdin)
	if err != nil {
		return err
	}
	src := in.dockerfile

	st, err := openStore(ctx, g.root)
	if err != nil {
		return err
	}
	regOpts := []registry.Option{registry.WithInsecureRegistries(append(o.insecure, insecureHosts(outputs)...)...)}
	if o.pull {
		regOpts = append(regOpts, registry.WithAlwaysPull())
	}
	reg, err := st.registry(regOpts...)
	if err != nil {
		return err
	}

	builds, err := convertPlatforms(ctx, src, in, o, args, platforms, registryResolver{reg}, network, stderr)
	if err != nil {
		return err
	}
	if o.printLLB {
		return printLLB(stdout, builds)
	}
	if err := checkEmulation(builds, os.Getenv(binfmtDirEnv)); err != nil {
		return withSource(err, src)
	}

	tmp, err := st.tempDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if in.emptyContext {
		empty := filepath.Join(tmp, "empty-context")
		if err := os.Mkdir(empty, 0o755); err != nil {
			return err
		}
		in.locals["context"] = empty
	}
	p := progress.New(stderr, mode)
	defer p.Close()
	stats := st.statCache()
	// Saved even when the build fails: the digests it learned are still right.
	defer func() {
		if err := stats.Save(); err != nil {
			p.Printf("warning: %v", err)
		}
	}()
	// Layers stay remote until a step or an output reads them; the importer fetches
	// them from the cache that named them, or else from where the registry client
	// saw them (base images).
	imported := remotecache.NewImporter(st.content, reg)
	if err := importCaches(ctx, imported, reg, cacheFrom, st.cacheMounts(), p); err != nil {
		return err
	}
	deps := ops.Deps{
		Content:     st.content,
		Snapshots:   st.snapshots,
		Executor:    st.exec,
		Images:      reg,
		Locals:      in.locals,
		Secrets:     in.secrets,
		SSH:         in.ssh,
		CacheMounts: st.cacheMounts(),
		TempDir:     tmp,
		StatCache:   stats,
		Blobs:       imported,
	}
	slv, err := solver.New(ops.Resolver(deps), imported.Index(st.index), solver.WithProgress(p))
	if err != nil {
		return err
	}
	start := time.Now()
	// Every platform in one solve: the graphs differ (base image digests, TARGET*
	// args) except for stages on $BUILDPLATFORM, which the solver then runs once.
	var outs []*llb.Vertex
	for _, b := range builds {
		if b.out != nil {
			outs = append(outs, b.out)
		}
	}
	results, err := slv.Solve(ctx, outs...)
	if err != nil {
		return withSource(err, src)
	}
	for _, b := range builds {
		if err := b.solved(results); err != nil {
			return err
		}
	}
	if err := fetchFinal(ctx, deps, builds, len(o.tags) > 0, outputs); err != nil {
		return err
	}
	for _, c := range cacheTo {
		if c.Type != "inline" {
			continue
		}
		for _, b := range builds {
			if err := withInlineCache(b); err != nil {
				return err
			}
		}
	}
	conv, err := st.converter()
	if err != nil {
		return err
	}
	ex := &exports{st: st, reg: reg, conv: conv, builds: builds, epoch: builds[0].fe.SourceDateEpoch, stdout: stdout, p: p}
	md, err := ex.run(ctx, o.tags, outputs)
	if err != nil {
		return err
	}
	id := md.configDigest
	if len(builds) > 1 {
		id = md.manifestDigest
	}
	if err := writeMetadata(o.metadata, o.iidFile, md); err != nil {
		return err
	}
	if err := exportCaches(ctx, st, reg, imported, builds, cacheTo, p); err != nil {
		return err
	}
	p.Close()
	p.Printf("built %s in %.2fs, %s", id, time.Since(start).Seconds(), p.Summary())
	if len(o.tags) == 0 && len(outputs) == 0 {
		p.Printf("no -t and no --output given: the result is only in the build cache")
	}
	// Best effort: a store over its keep-storage limit is trimmed, least recently used
	// records first; it never fails the build. A build that ran no step stored no
	// layer, so it skips even autoGC's cheap check (a stat per blob) and a no-op
	// rebuild stays cheap on a large store.
	if slices.ContainsFunc(builds, (*platformBuild).madeLayers) {
		if err := st.autoGC(ctx, g.gcKeepStorage, stderr); err != nil {
			p.Printf("warning: %v", err)
		}
	}
	return nil
}

// platformBuild is one platform's part of a build: its lowered Dockerfile, and once
// solved, its final filesystem and image config.
type platformBuild struct {
	platform ocispec.Platform
	fe       *dockerfile.Result
	out      *llb.Vertex // nil for an empty result (FROM scratch and nothing else)
	final    cache.Ref
	cfg      []byte
	// results are every solved vertex's, for cache export.
	results map[digest.Digest]solver.Result
}

// convertPlatforms lowers the Dockerfile once per platform. Warnings are printed once
// even though every platform's lowering reports them.
func convertPlatforms(ctx context.Context, src []byte, in *buildInputs, o *buildOptions, args map[string]string, platforms []ocispec.Platform, resolver dockerfile.ImageResolver, network string, stderr io.Writer) ([]*platformBuild, error) {
	var mu sync.Mutex
	warned := map[string]bool{}
	warn := func(file string, line int, msg string) {
		text := fmt.Sprintf("warning: %s: %s\n", file, msg)
		if line > 0 {
			text = fmt.Sprintf("warning: %s:%d: %s\n", file, line, msg)
		}
		mu.Lock()
		defer mu.Unlock()
		if !warned[text] {
			warned[text] = true
			fmt.Fprint(stderr, text)
		}
	}
	builds := make([]*platformBuild, 0, len(platforms))
	for _, pl := range platforms {
		fe, err := dockerfile.Convert(ctx, src, dockerfile.Options{
			Filename:        in.filename,
			BuildArgs:       args,
			Target:          o.target,
			NoCache:         o.noCache,
			Resolver:        resolver,
			ContextName:     "context",
			Platform:        pl,
			BuildPlatform:   platform.Host(),
			MultiPlatform:   len(platforms) > 1,
			Network:         network,
			ContextExcludes: in.ignore,
			NamedContexts:   in.named,
			Warn:            warn,
		})
		if err != nil {
			return nil, withSource(err, src)
		}
		if len(in.labels) > 0 {
			if fe.Image.Config.Labels == nil {
				fe.Image.Config.Labels = map[string]string{}
			}
			maps.Copy(fe.Image.Config.Labels, in.labels)
		}
		builds = append(builds, &platformBuild{platform: pl, fe: fe, out: fe.State.Vertex()})
	}
	return builds, nil
}

// printLLB prints the graph as JSON (--print-llb): one definition, or with several
// platforms a list of {"platform", "definition"}.
func printLLB(w io.Writer, builds []*platformBuild) error {
	type platformDef struct {
		Platform   string          `json:"platform"`
		Definition *llb.Definition `json:"definition"`
	}
	defs := make([]platformDef, len(builds))
	for i, b := range builds {
		defs[i].Platform = platform.Format(b.platform)
		if b.out == nil {
			defs[i].Definition = &llb.Definition{Version: 1, Vertices: []llb.VertexDef{}}
			continue
		}
		def, err := llb.Marshal(b.out)
		if err != nil {
			return err
		}
		defs[i].Definition = def
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if len(builds) == 1 {
		if builds[0].out == nil {
			_, err := fmt.Fprintln(w, `{"version":1,"vertices":[],"output":""}`)
			return err
		}
		return enc.Encode(defs[0].Definition)
	}
	return enc.Encode(defs)
}

// solved takes the build's results from those of the whole solve (every platform's
// vertices, by digest) and completes its image config.
func (b *platformBuild) solved(results map[digest.Digest]solver.Result) error {
	if b.out != nil {
		b.final = results[b.out.Digest()].Ref
	}
	b.results = results
	cfg, err := imageConfig(b.fe, b.out, results)
	if err != nil {
		return err
	}
	b.cfg = cfg
	return nil
}

// madeLayers reports whether the solve ran a step that can have stored a layer (an
// exec or file op that was not a cache hit).
func (b *platformBuild) madeLayers() bool {
	made := false
	if b.out == nil {
		return false
	}
	_ = llb.Walk(b.out, func(v *llb.Vertex) error {
		switch v.Op().(type) {
		case *llb.ExecOp, *llb.FileOp:
			if r, ok := b.results[v.Digest()]; ok && !r.Cached {
				made = true
			}
		}
		return nil
	})
	return made
}

// imageConfig completes the frontend's config: history entries of steps that changed
// nothing are marked empty (they have no layer), and timestamps are set. A step's time
// is when its result was first made, so a fully cached rebuild yields the same config
// and thus the same image.
//
// With SOURCE_DATE_EPOCH the image is created at the epoch, and so is every history
// entry of this build; inherited entries keep their time unless it is later (as in
// BuildKit), so the config does not depend on when or where the build ran.
func imageConfig(fe *dockerfile.Result, out *llb.Vertex, results map[digest.Digest]solver.Result) ([]byte, error) {
	img := fe.DockerImage()
	added := addedLayers(out, results)
	epoch := fe.SourceDateEpoch
	var created time.Time
	for _, d := range fe.History {
		if c := results[d].Created; d != "" && c.After(created) {
			created = c
		}
	}
	if created.IsZero() {
		created = time.Now().UTC()
	}
	if epoch != nil {
		created = *epoch
	}
	img.Created = &created
	for i := range img.History {
		var d digest.Digest
		if i < len(fe.History) {
			d = fe.History[i]
		}
		if d != "" {
			img.History[i].EmptyLayer = !added[d]
			if c := results[d].Created; !c.IsZero() && epoch == nil {
				img.History[i].Created = &c
			}
		}
		if h := img.History[i].Created; h == nil || (epoch != nil && (d != "" || h.After(*epoch))) {
			img.History[i].Created = &created
		}
	}
	dt, err := json.Marshal(img)
	if err != nil {
		return nil, fmt.Errorf("encoding image config: %w", err)
	}
	return dt, nil
}

// addedLayers tells, per vertex, whether its result has more layers than the filesystem
// it started from.
func addedLayers(out *llb.Vertex, results map[digest.Digest]solver.Result) map[digest.Digest]bool {
	added := map[digest.Digest]bool{}
	if out == nil {
		return added
	}
	_ = llb.Walk(out, func(v *llb.Vertex) error {
		base := llb.NoInput
		switch op := v.Op().(type) {
		case *llb.ExecOp:
			base = op.Root
		case *llb.FileOp:
			base = op.Base
		default:
			return nil
		}
		before := 0
		if base != llb.NoInput {
			before = len(results[v.Inputs()[base].Digest()].Ref.Layers)
		}
		added[v.Digest()] = len(results[v.Digest()].Ref.Layers) > before
		return nil
	})
	return added
}

// buildInputs is everything a build reads from the client besides the store.
type buildInputs struct {
	dockerfile []byte
	filename   string
	ignore     []string
	locals     map[string]string // llb.Local name → directory
	named      map[string]string
	secrets    secretStore
	ssh        map[string]string
	labels     map[string]string
	// emptyContext: the context is an empty directory made in the build's temp dir.
	emptyContext bool
}

func readBuildInputs(o *buildOptions, stdin io.Reader) (*buildInputs, error) {
	in := &buildInputs{}
	var err error
	if in.named, in.locals, err = buildContexts(o.contexts); err != nil {
		return nil, err
	}
	dfPath := o.file
	if o.contextDir == "-" {
		// docker build -: the Dockerfile comes from stdin and there is no context.
		if dfPath != "" && dfPath != "-" {
			return nil, errors.New("the context is - (Dockerfile from stdin): -f cannot name another Dockerfile")
		}
		dfPath = "-"
		in.emptyContext = true
	} else {
		ctxDir, err := filepath.Abs(o.contextDir)
		if err != nil {
			return nil, err
		}
		if fi, err := os.Stat(ctxDir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("build context %s is not a directory", o.contextDir)
		}
		in.locals["context"] = ctxDir
		if dfPath == "" {
			dfPath = filepath.Join(o.contextDir, "Dockerfile")
		}
		ignoreNextTo := dfPath
		if dfPath == "-" {
			ignoreNextTo = ""
		}
		if in.ignore, err = readIgnore(ctxDir, ignoreNextTo); err != nil {
			return nil, err
		}
	}
	if in.dockerfile, in.filename, err = readDockerfile(dfPath, stdin); err != nil {
		return nil, err
	}
	if in.secrets, err = parseSecrets(o.secrets, os.LookupEnv); err != nil {
		return nil, err
	}
	if in.ssh, err = parseSSH(o.ssh, os.LookupEnv); err != nil {
		return nil, err
	}
	if in.labels, err = parseLabels(o.labels); err != nil {
		return nil, err
	}
	return in, nil
}

func parseBuildArgs(in []string) (map[string]string, error) {
	out := map[string]string{}
	for _, a := range in {
		k, v, ok := strings.Cut(a, "=")
		if k == "" {
			return nil, fmt.Errorf("--build-arg %q: missing name", a)
		}
		if !ok {
			env, set := os.LookupEnv(k)
			if !set {
				continue
			}
			v = env
		}
		out[k] = v
	}
	return out, nil
}

// registryResolver adapts the registry client to the frontend's ImageResolver.
type registryResolver struct{ c *registry.Client }

func (r registryResolver) ResolveImageConfig(ctx context.Context, ref string, p ocispec.Platform) (string, []byte, error) {
	vp := v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, OSVersion: p.OSVersion}
	if strings.HasPrefix(ref, registry.OCILayoutScheme) {
		return registry.ResolveOCILayoutPlatform(ctx, ref, vp)
	}
	res, err := r.c.ResolvePlatform(ctx, ref, vp)
	if err != nil {
		return "", nil, err
	}
	return res.Ref, res.Config, nil
}
