package dockerfile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/builderdev/builder/llb"
)

const (
	// historyComment marks history entries the way BuildKit does, so tools that look
	// for Dockerfile-built layers recognise ours.
	historyComment     = "buildkit.dockerfile.v0"
	defaultPathEnv     = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	scratchName        = "scratch"
	defaultContextName = "context"
)

// ImageResolver gives the frontend what it needs of a base image at lowering time.
// Convert may call it from several goroutines at once, at most once per reference.
type ImageResolver interface {
	// ResolveImageConfig returns the normalised reference pinned by digest (e.g.
	// docker.io/library/busybox:latest@sha256:...) and the raw OCI/Docker image config JSON.
	ResolveImageConfig(ctx context.Context, ref string) (pinned string, config []byte, err error)
}

// Options configures Convert.
type Options struct {
	Filename  string            // for errors, e.g. "Dockerfile" or "examples/x/Dockerfile"
	BuildArgs map[string]string // --build-arg
	Target    string            // --target; "" = last stage
	NoCache   bool              // sets llb.Meta.IgnoreCache on every vertex
	Resolver  ImageResolver
	// ContextName is the llb.Local name of the build context; default "context".
	ContextName string
	// Platform is the platform built for; default linux/runtime.GOARCH. Only native
	// builds are lowered: a FROM --platform naming another platform is an error.
	Platform ocispec.Platform
	// Network is the network of RUN steps that do not say RUN --network (the build's
	// --network): llb.NetworkHost (the default) or llb.NetworkNone.
	Network string
	// ContextExcludes are the build context's .dockerignore patterns; they go into the
	// context source's llb.AttrLocalExcludes attribute.
	ContextExcludes []string
	// NamedContexts replace a stage, image or context name wherever FROM, COPY --from or
	// RUN --mount from= uses it (--build-context NAME=VALUE). A value is one of
	// "docker-image://REF" (resolved with Resolver like any image), "oci-layout://..."
	// (passed to Resolver as is; the pinned reference it returns is an llb source
	// identifier) or "local://NAME" (an llb.Local source the caller provides).
	NamedContexts map[string]string
	// Warn receives notes that do not stop the build (an ignored "# syntax=" directive,
	// lint warnings); nil drops them.
	Warn func(file string, line int, msg string)
}

// Result is a lowered Dockerfile.
type Result struct {
	// State is the target stage's filesystem (llb.Scratch() possible).
	State llb.State
	// Image is the config for the target: Config, history, platform. RootFS and Created
	// are left for the exporter.
	Image ocispec.Image
	// DockerConfig holds the config fields the OCI spec lacks (HEALTHCHECK, SHELL,
	// ONBUILD); DockerImage merges them back for Docker-format configs.
	DockerConfig dockerspec.DockerOCIImageConfigExt
	// History links each entry of Image.History to the vertex that produced its layer:
	// the vertex digest for entries that change the filesystem (RUN, COPY, ADD,
	// WORKDIR's mkdir), also those inherited from a parent stage; "" for metadata-only
	// entries (EmptyLayer) and for entries inherited from the base image.
	History []digest.Digest
}

// DockerImage returns the image config in Docker's extended form (OCI plus
// Healthcheck, Shell and OnBuild), which is what docker build writes.
func (r *Result) DockerImage() dockerspec.DockerOCIImage {
	return dockerspec.DockerOCIImage{
		Image: r.Image,
		Config: dockerspec.DockerOCIImageConfig{
			ImageConfig:             r.Image.Config,
			DockerOCIImageConfigExt: r.DockerConfig,
		},
	}
}

// converter holds the state of one Convert call.
type converter struct {
	opt  Options
	file string
	// lex expands words in instructions; show expands descriptions the way BuildKit
	// prints them (quotes kept, unset variables left as written).
	lex   *shell.Lex
	show  *shell.Lex
	empty shell.EnvGetter

	global []string // global ARG scope (K=V): FROM lines and ARGs without a default
	stages []*stage
	// froms records where each COPY --from reads from.
	froms  map[*instructions.CopyCommand]copyFrom
	images map[string]*baseImage // by reference as written in the Dockerfile
	local  *llb.State
}

// stage is one FROM ... section while it is lowered.
type stage struct {
	index    int
	inst     instructions.Stage
	baseName string // FROM argument after ARG expansion
	base     *stage // FROM a previous stage
	display  string // name in descriptions: the AS name, stage-N, or "" when only one stage
	deps     []*stage
	cmdTotal int
	cmdIndex int

	done  bool
	state llb.State
	img   dockerspec.DockerOCIImage
	hist  []digest.Digest
	env   []string // what RUN sees and words expand with: image env, ENV, ARG values
	args  []instructions.KeyValuePairOptional
	// cmdSet records a CMD in this stage: ENTRYPOINT resets an inherited CMD only.
	cmdSet bool
}

// copyFrom is the source of a COPY --from: a stage or an image reference.
type copyFrom struct {
	stage *stage
	image string
}

// baseImage is a resolved image reference.
type baseImage struct {
	pinned string
	img    dockerspec.DockerOCIImage
	err    error
}

// Convert parses dockerfile and lowers the stages the target needs to an llb graph and
// the target's image config.
func Convert(ctx context.Context, dockerfile []byte, opt Options) (res *Result, err error) {
	if opt.Filename == "" {
		opt.Filename = "Dockerfile"
	}
	if opt.ContextName == "" {
		opt.ContextName = defaultContextName
	}
	switch opt.Network {
	case "":
		opt.Network = llb.NetworkHost
	case llb.NetworkHost, llb.NetworkNone:
	default:
		return nil, fmt.Errorf("network mode %q: want host or none", opt.Network)
	}
	if opt.Platform.OS == "" {
		opt.Platform.OS = "linux"
	}
	if opt.Platform.Architecture == "" {
		opt.Platform.Architecture = runtime.GOARCH
	}
	c := &converter{
		opt:    opt,
		file:   opt.Filename,
		empty:  shell.EnvsFromSlice(nil),
		froms:  map[*instructions.CopyCommand]copyFrom{},
		images: map[string]*baseImage{},
	}
	defer func() {
		if err != nil {
			err = c.locate(err, nil, "")
		}
	}()

	if len(bytes.TrimSpace(dockerfile)) == 0 {
		return nil, &Error{File: c.file, Line: 1, EndLine: 1, Err: errors.New("the Dockerfile is empty")}
	}
	ast, err := parser.Parse(bytes.NewReader(dockerfile))
	if err != nil {
		return nil, err
	}
	// A linter with no Warn func reports nothing; a nil one would crash on "# check=".
	stages, metaArgs, err := instructions.Parse(ast.AST, linter.New(&linter.Config{}))
	if err != nil {
		return nil, err
	}
	if len(stages) == 0 {
		_, end := lineRange(ast.AST.Location())
		return nil, &Error{File: c.file, Line: max(end, 1), EndLine: max(end, 1), Err: errors.New("no FROM instruction: nothing to build")}
	}
	c.lex = shell.NewLex(ast.EscapeToken)
	c.show = shell.NewLex(ast.EscapeToken)
	c.show.RawQuotes, c.show.RawEscapes, c.show.SkipUnsetEnv = true, true, true

	targetName := opt.Target
	if targetName == "" {
		targetName = stages[len(stages)-1].Name
	}
	if err := c.globalArgs(metaArgs, targetName); err != nil {
		return nil, err
	}
	if err := c.buildStages(stages); err != nil {
		return nil, err
	}
	target, err := c.target()
	if err != nil {
		return nil, err
	}
	if err := c.linkCopySources(); err != nil {
		return nil, err
	}
	needed := map[*stage]bool{}
	markNeeded(target, needed)
	c.resolveImages(ctx, needed)
	for _, s := range c.stages {
		if !needed[s] {
			continue
		}
		if err := c.dispatchStage(s); err != nil {
			return nil, err
		}
	}
	return c.result(target), nil
}

// globalArgs fills the global ARG scope: BuildKit's automatic platform args, then the
// ARGs before the first FROM, each overridden by a --build-arg of the same name.
func (c *converter) globalArgs(metaArgs []instructions.ArgCommand, target string) error {
	p := c.opt.Platform
	build := ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if target == "" {
		target = "default"
	}
	for _, kv := range [][2]string{
		{"BUILDPLATFORM", formatPlatform(build)},
		{"BUILDOS", build.OS},
		{"BUILDOSVERSION", build.OSVersion},
		{"BUILDARCH", build.Architecture},
		{"BUILDVARIANT", build.Variant},
		{"TARGETPLATFORM", formatPlatform(p)},
		{"TARGETOS", p.OS},
		{"TARGETOSVERSION", p.OSVersion},
		{"TARGETARCH", p.Architecture},
		{"TARGETVARIANT", p.Variant},
		{"TARGETSTAGE", target},
	} {
		v := kv[1]
		if o, ok := c.opt.BuildArgs[kv[0]]; ok {
			v = o
		}
		c.global = setEnv(c.global, kv[0], v)
	}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if v, ok := c.opt.BuildArgs[kv.Key]; ok {
				c.global = setEnv(c.global, kv.Key, v)
				continue
			}
			if kv.Value == nil {
				continue
			}
			v, _, err := c.lex.ProcessWord(*kv.Value, shell.EnvsFromSlice(c.global))
			if err != nil {
				return c.locate(withWord(kv.Key, err), a.Location(), "ARG")
			}
			c.global = setEnv(c.global, kv.Key, v)
		}
	}
	return nil
}

// buildStages expands FROM lines with the global args and links stages built on
// previous stages.
func (c *converter) buildStages(stages []instructions.Stage) error {
	globals := shell.EnvsFromSlice(c.global)
	for i, is := range stages {
		s := &stage{index: i, inst: is, display: is.Name}
		if s.display == "" {
			s.display = fmt.Sprintf("stage-%d", i)
		}
		base, _, err := c.lex.ProcessWord(is.BaseName, globals)
		if err != nil {
			return c.locate(withWord(is.BaseName, err), is.Location, "FROM")
		}
		if base == "" {
			return c.locate(withWord(is.BaseName, errors.New("base name expands to nothing")), is.Location, "FROM")
		}
		s.baseName = base
		if is.Platform != "" {
			if err := c.checkPlatform(is.Platform, globals); err != nil {
				return c.locate(err, is.Location, "FROM")
			}
		}
		// Only earlier stages can be a base: a later stage's name is an image name.
		if prev := c.stageByName(base); prev != nil {
			s.base = prev
		}
		if s.base == nil && base != scratchName {
			s.cmdTotal = 1
		}
		for _, cmd := range is.Commands {
			switch cmd.(type) {
			case *instructions.AddCommand, *instructions.CopyCommand, *instructions.RunCommand, *instructions.WorkdirCommand:
				s.cmdTotal++
			}
		}
		c.stages = append(c.stages, s)
	}
	if len(c.stages) == 1 {
		c.stages[0].display = ""
	}
	return nil
}

// checkPlatform accepts FROM --platform only when it names the platform being built.
func (c *converter) checkPlatform(raw string, globals shell.EnvGetter) error {
	v, _, err := c.lex.ProcessWord(raw, globals)
	if err != nil {
		return withWord("--platform="+raw, err)
	}
	parts := strings.Split(strings.ToLower(v), "/")
	want := c.opt.Platform
	switch {
	case len(parts) < 2 || len(parts) > 3:
		return withWord("--platform="+v, errors.New("platform must be os/arch[/variant]"))
	case parts[0] != want.OS || parts[1] != want.Architecture || (len(parts) == 3 && parts[2] != want.Variant):
		return withWord("--platform="+v, fmt.Errorf("building a %s stage for %s: %w", v, formatPlatform(want), errNotSupported))
	}
	return nil
}

func (c *converter) stageByName(name string) *stage {
	for _, s := range c.stages {
		if s.inst.Name != "" && strings.EqualFold(s.inst.Name, name) {
			return s
		}
	}
	return nil
}

func (c *converter) stageNames() []string {
	var names []string
	for _, s := range c.stages {
		if s.inst.Name != "" {
			names = append(names, s.inst.Name)
		}
	}
	return names
}

func (c *converter) target() (*stage, error) {
	if c.opt.Target == "" {
		return c.stages[len(c.stages)-1], nil
	}
	if s := c.stageByName(c.opt.Target); s != nil {
		return s, nil
	}
	msg := fmt.Sprintf("target stage %q could not be found", c.opt.Target)
	if alt := suggest(c.opt.Target, c.stageNames()); alt != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", alt)
	}
	return nil, &Error{File: c.file, Err: errors.New(msg)}
}

// linkCopySources classifies every COPY --from as a stage or an image, as BuildKit
// does: a number is a stage index, a stage name wins over an image name.
func (c *converter) linkCopySources() error {
	for _, s := range c.stages {
		for _, cmd := range s.inst.Commands {
			cp, ok := cmd.(*instructions.CopyCommand)
			if !ok || cp.From == "" {
				continue
			}
			from, err := c.copySource(cp.From)
			if err != nil {
				return c.locate(withWord("--from="+cp.From, err), cp.Location(), "COPY")
			}
			c.froms[cp] = from
			if from.stage != nil {
				s.deps = append(s.deps, from.stage)
			}
		}
	}
	return nil
}

func (c *converter) copySource(name string) (copyFrom, error) {
	if v, _, err := c.lex.ProcessWord(name, c.empty); err != nil || v != name {
		return copyFrom{}, errors.New("variable expansion is not supported for --from: define a stage with FROM using a global ARG instead")
	}
	if n, err := strconv.Atoi(name); err == nil {
		if n < 0 || n >= len(c.stages) {
			return copyFrom{}, fmt.Errorf("invalid stage index %d", n)
		}
		return copyFrom{stage: c.stages[n]}, nil
	}
	if s := c.stageByName(name); s != nil {
		return copyFrom{stage: s}, nil
	}
	return copyFrom{image: name}, nil
}

func markNeeded(s *stage, needed map[*stage]bool) {
	if needed[s] {
		return
	}
	needed[s] = true
	if s.base != nil {
		markNeeded(s.base, needed)
	}
	for _, d := range s.deps {
		markNeeded(d, needed)
	}
}

// resolveImages resolves every image the needed stages read, concurrently and once per
// reference; failures are reported where the image is used.
func (c *converter) resolveImages(ctx context.Context, needed map[*stage]bool) {
	var refs []string
	add := func(ref string) {
		if !slices.Contains(refs, ref) {
			refs = append(refs, ref)
		}
	}
	for _, s := range c.stages {
		if !needed[s] {
			continue
		}
		if s.base == nil && s.baseName != scratchName {
			add(s.baseName)
		}
		for _, cmd := range s.inst.Commands {
			if cp, ok := cmd.(*instructions.CopyCommand); ok && c.froms[cp].image != "" {
				add(c.froms[cp].image)
			}
		}
	}
	results := make([]*baseImage, len(refs))
	var wg sync.WaitGroup
	for i, ref := range refs {
		wg.Go(func() { results[i] = c.resolve(ctx, ref) })
	}
	wg.Wait()
	for i, ref := range refs {
		c.images[ref] = results[i]
	}
}

func (c *converter) resolve(ctx context.Context, ref string) *baseImage {
	if c.opt.Resolver == nil {
		return &baseImage{err: errors.New("no image resolver configured")}
	}
	pinned, dt, err := c.opt.Resolver.ResolveImageConfig(ctx, ref)
	if err != nil {
		return &baseImage{err: err}
	}
	if pinned == "" {
		return &baseImage{err: errors.New("resolver returned an empty reference")}
	}
	bi := &baseImage{pinned: pinned}
	if err := json.Unmarshal(dt, &bi.img); err != nil {
		return &baseImage{err: fmt.Errorf("decoding image config of %s: %w", pinned, err)}
	}
	return bi
}

// dispatchStage lowers one stage: its base, then each instruction in order.
func (c *converter) dispatchStage(s *stage) (err error) {
	defer func() {
		if err != nil {
			err = c.locate(err, s.inst.Location, "FROM")
		}
	}()
	switch {
	case s.base != nil:
		b := s.base
		if len(b.img.Config.OnBuild) > 0 {
			return withWord(s.baseName, fmt.Errorf("running ONBUILD triggers: %w", errNotSupported))
		}
		s.state, s.img = b.state, cloneImage(b.img)
		s.hist, s.env, s.args = slices.Clone(b.hist), slices.Clone(b.env), slices.Clone(b.args)
	case s.baseName == scratchName:
		s.state = llb.Scratch()
		s.img = emptyImage(c.opt.Platform)
	default:
		bi := c.images[s.baseName]
		if bi.err != nil {
			return withWord(s.baseName, fmt.Errorf("resolving image: %w", bi.err))
		}
		if len(bi.img.Config.OnBuild) > 0 {
			return withWord(s.baseName, fmt.Errorf("running the image's ONBUILD triggers: %w", errNotSupported))
		}
		s.img = cloneImage(bi.img)
		s.img.Created = nil
		s.hist = make([]digest.Digest, len(s.img.History))
		if isLayerless(s.img) {
			s.state = llb.Scratch()
		} else {
			st, err := llb.Image(bi.pinned, c.meta(s.describe("FROM "+bi.pinned), s.inst.Location))
			if err != nil {
				return err
			}
			s.state = st
		}
	}
	if s.base == nil {
		if _, ok := lookupEnv(s.img.Config.Env, "PATH"); !ok {
			s.img.Config.Env = append(s.img.Config.Env, "PATH="+defaultPathEnv)
		}
		s.env = slices.Clone(s.img.Config.Env)
	}
	for _, cmd := range s.inst.Commands {
		if err := c.dispatch(s, cmd); err != nil {
			return err
		}
	}
	s.done = true
	return nil
}

// isLayerless reports an image with no filesystem (BuildKit lowers it as scratch).
func isLayerless(img dockerspec.DockerOCIImage) bool {
	if len(img.RootFS.DiffIDs) > 0 {
		return false
	}
	for _, h := range img.History {
		if !h.EmptyLayer {
			return false
		}
	}
	return true
}

func (c *converter) result(s *stage) *Result {
	img := cloneImage(s.img)
	p := c.opt.Platform
	img.OS, img.Architecture, img.Variant = p.OS, p.Architecture, p.Variant
	img.OSVersion, img.OSFeatures = p.OSVersion, slices.Clone(p.OSFeatures)
	img.RootFS = ocispec.RootFS{}
	img.Created = nil
	res := &Result{
		State:        s.state,
		Image:        img.Image,
		DockerConfig: img.Config.DockerOCIImageConfigExt,
		History:      slices.Clone(s.hist),
	}
	res.Image.Config = img.Config.ImageConfig
	return res
}

// meta describes a vertex made for the instruction at loc.
func (c *converter) meta(desc string, loc []parser.Range) llb.Meta {
	m := llb.Meta{Description: desc, IgnoreCache: c.opt.NoCache}
	if start, end := lineRange(loc); start > 0 {
		m.Location = &llb.SourceLocation{File: c.file, StartLine: start, EndLine: end}
	}
	return m
}

// describe prefixes a progress description with the stage and step, like buildx:
// "[build 2/5] RUN make". Steps count FROM image, RUN, COPY, ADD and WORKDIR.
func (s *stage) describe(text string) string {
	if s.cmdTotal == 0 {
		return text
	}
	s.cmdIndex++
	prefix := "["
	if s.display != "" {
		prefix += s.display + " "
	}
	return fmt.Sprintf("%s%*d/%d] %s", prefix, len(strconv.Itoa(s.cmdTotal)), s.cmdIndex, s.cmdTotal, text)
}

// commit appends a history entry; layer is the vertex that made the layer, "" for none.
func (s *stage) commit(createdBy string, layer digest.Digest) {
	s.img.History = append(s.img.History, ocispec.History{
		CreatedBy:  createdBy,
		Comment:    historyComment,
		EmptyLayer: layer == "",
	})
	s.hist = append(s.hist, layer)
}

func emptyImage(p ocispec.Platform) dockerspec.DockerOCIImage {
	var img dockerspec.DockerOCIImage
	img.OS, img.Architecture, img.Variant = p.OS, p.Architecture, p.Variant
	img.OSVersion, img.OSFeatures = p.OSVersion, slices.Clone(p.OSFeatures)
	img.RootFS.Type = "layers"
	img.Config.WorkingDir = "/"
	img.Config.Env = []string{"PATH=" + defaultPathEnv}
	return img
}

// cloneImage copies img deeply enough that a stage built on another cannot change it.
func cloneImage(img dockerspec.DockerOCIImage) dockerspec.DockerOCIImage {
	out := img
	cfg := &out.Config
	cfg.Env = slices.Clone(cfg.Env)
	cfg.Cmd = slices.Clone(cfg.Cmd)
	cfg.Entrypoint = slices.Clone(cfg.Entrypoint)
	cfg.OnBuild = slices.Clone(cfg.OnBuild)
	cfg.Shell = slices.Clone(cfg.Shell)
	cfg.ExposedPorts = maps.Clone(cfg.ExposedPorts)
	cfg.Volumes = maps.Clone(cfg.Volumes)
	cfg.Labels = maps.Clone(cfg.Labels)
	if cfg.Healthcheck != nil {
		hc := *cfg.Healthcheck
		hc.Test = slices.Clone(hc.Test)
		cfg.Healthcheck = &hc
	}
	out.History = slices.Clone(out.History)
	out.RootFS.DiffIDs = slices.Clone(out.RootFS.DiffIDs)
	return out
}

func formatPlatform(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// setEnv sets k in a K=V list, in place when present, keeping the order.
func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if key, _, _ := strings.Cut(e, "="); key == k {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

func lookupEnv(env []string, k string) (string, bool) {
	for _, e := range env {
		if key, v, _ := strings.Cut(e, "="); key == k {
			return v, true
		}
	}
	return "", false
}
