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
	"time"

	ggcrname "github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/builderdev/builder/frontend/platform"
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
// Convert may call it from several goroutines at once, at most once per reference and
// platform.
type ImageResolver interface {
	// ResolveImageConfig returns the normalised reference pinned by digest to the image
	// for platform (e.g. docker.io/library/busybox:latest@sha256:... naming the
	// platform's manifest, not the index) and the raw OCI/Docker image config JSON.
	// An image pinned to a manifest by the Dockerfile is that image, whatever platform says.
	ResolveImageConfig(ctx context.Context, ref string, platform ocispec.Platform) (pinned string, config []byte, err error)
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
	// Platform is the platform built for (TARGETPLATFORM); default BuildPlatform. Stages
	// without FROM --platform are built for it; FROM --platform=$BUILDPLATFORM (or any
	// other platform) builds that stage for another platform, with its base image
	// resolved for that platform, while TARGET* args still describe Platform.
	Platform ocispec.Platform
	// BuildPlatform is the platform builder runs on (BUILDPLATFORM); default
	// linux/runtime.GOARCH.
	BuildPlatform ocispec.Platform
	// MultiPlatform prefixes progress descriptions with the stage's platform, as
	// BuildKit does when several platforms are built at once ("[linux/arm64 2/3] RUN ...").
	MultiPlatform bool
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
	// Keys are matched against the short form of a name ("alpine" matches FROM
	// docker.io/library/alpine:latest); a key naming a stage replaces that whole stage
	// (its instructions do not run), as BuildKit does. A local directory used by FROM
	// is copied onto scratch.
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
	// SourceDateEpoch is the SOURCE_DATE_EPOCH build arg (or global ARG default) as
	// a time, nil when not set: the exporter's "created" times.
	SourceDateEpoch *time.Time
	// RunPlatforms gives the platform of the stage each RUN vertex was lowered in, by
	// vertex digest, so a caller can check before solving that the host can run every
	// platform's programs (a RUN for a foreign platform needs emulation).
	RunPlatforms map[digest.Digest]ocispec.Platform
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
	// lint reports BuildKit's lint rules to Options.Warn; "# check=error=true" turns
	// them into an error at the end.
	lint *linter.Linter

	global []string // global ARG scope (K=V): FROM lines and ARGs without a default
	stages []*stage
	// froms records where each COPY --from reads from.
	froms map[*instructions.CopyCommand]copyFrom
	// images holds resolved images and OCI layouts, by the string given to the resolver
	// and the platform it was resolved for.
	images map[imageKey]*baseImage
	// runs records the platform of each RUN vertex (Result.RunPlatforms).
	runs  map[digest.Digest]ocispec.Platform
	local *llb.State
	// epoch is SOURCE_DATE_EPOCH (Unix seconds), nil when not given.
	epoch *int64
}

// stage is one FROM ... section while it is lowered.
type stage struct {
	index    int
	inst     instructions.Stage
	baseName string // FROM argument after ARG expansion
	// platform is what the stage is built for: FROM --platform, the base stage's
	// platform, or Options.Platform. Its base image is resolved for it.
	platform ocispec.Platform
	// prefix starts progress descriptions: the platform when building several.
	prefix string
	base   *stage   // FROM a previous stage
	from   copyFrom // FROM anything else: scratch, a named context or an image
	// replaced is the named context that stands for this whole stage
	// (--build-context NAME=... with NAME the stage's name): its commands do not run.
	replaced string
	display  string // name in descriptions: the AS name, stage-N, or "" when only one stage
	deps     []*stage
	// refs are the images and named contexts the stage's commands read (COPY --from,
	// RUN --mount from=): they are resolved with the base images.
	refs []copyFrom
	// triggers are the base's ONBUILD instructions, run right after FROM.
	triggers     []trigger
	triggersInit bool
	cmdTotal     int
	cmdIndex     int
	// onbuild is set while a trigger is lowered: its description says ONBUILD.
	onbuild bool
	// loc is the location of the instruction being lowered.
	loc []parser.Range

	done  bool
	state llb.State
	img   dockerspec.DockerOCIImage
	hist  []digest.Digest
	env   []string // what RUN sees and words expand with: image env, ENV, ARG values
	args  []instructions.KeyValuePairOptional
	// cmdSet records a CMD in this stage: ENTRYPOINT resets an inherited CMD only.
	cmdSet bool
	// workdirSet records a WORKDIR in this stage or a parent stage (for the
	// WorkdirRelativePath lint rule).
	workdirSet bool
}

// copyFrom is what a FROM, COPY --from or RUN --mount from= reads: a stage, the empty
// filesystem, a named context (key of Options.NamedContexts) or an image reference.
type copyFrom struct {
	stage   *stage
	scratch bool
	named   string
	image   string
}

// imageKey names one resolution: a resolver reference for a platform (os/arch[/variant]).
type imageKey struct {
	ref      string
	platform string
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
	if opt.BuildPlatform.OS == "" {
		opt.BuildPlatform.OS = "linux"
	}
	if opt.BuildPlatform.Architecture == "" {
		opt.BuildPlatform.Architecture = runtime.GOARCH
	}
	opt.BuildPlatform = platform.Normalize(opt.BuildPlatform)
	if opt.Platform.OS == "" && opt.Platform.Architecture == "" {
		opt.Platform = opt.BuildPlatform
	}
	if opt.Platform.OS == "" {
		opt.Platform.OS = "linux"
	}
	if opt.Platform.Architecture == "" {
		return nil, fmt.Errorf("platform %q: os and architecture are required", platform.Format(opt.Platform))
	}
	opt.Platform = platform.Normalize(opt.Platform)
	c := &converter{
		opt:    opt,
		file:   opt.Filename,
		empty:  shell.EnvsFromSlice(nil),
		froms:  map[*instructions.CopyCommand]copyFrom{},
		images: map[imageKey]*baseImage{},
		runs:   map[digest.Digest]ocispec.Platform{},
	}
	defer func() {
		if err != nil {
			err = c.locate(err, nil, "")
		}
	}()

	if len(bytes.TrimSpace(dockerfile)) == 0 {
		return nil, &Error{File: c.file, Line: 1, EndLine: 1, Err: errors.New("the Dockerfile is empty")}
	}
	if err := c.directives(dockerfile); err != nil {
		return nil, err
	}
	ast, err := parser.Parse(bytes.NewReader(dockerfile))
	if err != nil {
		return nil, err
	}
	for _, w := range ast.Warnings {
		// The parser's only warning is an empty continuation line; BuildKit reports it
		// through the linter, so "# check=skip=NoEmptyContinuation" silences it.
		if w.URL == linter.RuleNoEmptyContinuation.URL && w.Location != nil {
			c.lint.Run(&linter.RuleNoEmptyContinuation, []parser.Range{*w.Location}, linter.RuleNoEmptyContinuation.Format())
		}
	}
	stages, metaArgs, err := instructions.Parse(ast.AST, c.lint)
	if err != nil {
		return nil, err
	}
	if len(stages) == 0 {
		_, end := lineRange(ast.AST.Location())
		return nil, &Error{File: c.file, Line: max(end, 1), EndLine: max(end, 1), Err: errors.New("no FROM instruction: nothing to build")}
	}
	c.lintStageNames(stages)
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
	if err := c.sourceDateEpoch(); err != nil {
		return nil, err
	}
	if err := c.buildStages(stages); err != nil {
		return nil, err
	}
	target, err := c.target()
	if err != nil {
		return nil, err
	}
	if err := c.linkSources(); err != nil {
		return nil, err
	}
	needed, err := c.resolveNeeded(ctx, target)
	if err != nil {
		return nil, err
	}
	for _, s := range c.stages {
		if !needed[s] {
			continue
		}
		if err := c.dispatchStage(s); err != nil {
			return nil, err
		}
	}
	if err := c.lint.Error(); err != nil {
		// "# check=error=true": BuildKit fails the build after lowering it all.
		return nil, &Error{File: c.file, Err: err}
	}
	return c.result(target), nil
}

// directives handles the parser directives BuildKit reads before parsing: "# syntax="
// names a frontend image (this builder always uses its own, so it is only noted) and
// "# check=" configures the linter.
func (c *converter) directives(dockerfile []byte) error {
	if syntax, _, loc, ok := parser.DetectSyntax(dockerfile); ok && c.opt.Warn != nil {
		line, _ := lineRange(loc)
		c.opt.Warn(c.file, max(line, 1), fmt.Sprintf("# syntax=%s: builder uses its built-in frontend", syntax))
	}
	check, _, loc, _ := parser.ParseDirective("check", dockerfile)
	cfg, err := linter.ParseLintOptions(check)
	if err != nil {
		start, end := lineRange(loc)
		return &Error{File: c.file, Line: start, EndLine: end, Err: fmt.Errorf("parsing the check directive: %w", err)}
	}
	// The linter records a violation only when it has a Warn func, and error=true
	// needs the record even when the caller does not want the text.
	cfg.Warn = func(rule, _, _, msg string, loc []parser.Range) {
		if c.opt.Warn == nil {
			return
		}
		line, _ := lineRange(loc)
		c.opt.Warn(c.file, line, rule+": "+msg)
	}
	c.lint = linter.New(cfg)
	return nil
}

// lintStageNames runs the stage-name rules BuildKit's dockerfile2llb adds to those the
// instructions package runs.
func (c *converter) lintStageNames(stages []instructions.Stage) {
	seen := map[string]bool{}
	for _, s := range stages {
		if s.Name == "" {
			continue
		}
		name := strings.ToLower(s.Name)
		if name == scratchName || name == defaultContextName {
			c.lint.Run(&linter.RuleReservedStageName, s.Location, linter.RuleReservedStageName.Format(s.Name))
		}
		if seen[name] {
			c.lint.Run(&linter.RuleDuplicateStageName, s.Location, linter.RuleDuplicateStageName.Format(s.Name))
		}
		seen[name] = true
	}
}

// globalArgs fills the global ARG scope: BuildKit's automatic platform args, then the
// ARGs before the first FROM, each overridden by a --build-arg of the same name.
func (c *converter) globalArgs(metaArgs []instructions.ArgCommand, target string) error {
	p := c.opt.Platform
	build := c.opt.BuildPlatform
	if target == "" {
		target = "default"
	}
	for _, kv := range [][2]string{
		{"BUILDPLATFORM", platform.Format(build)},
		{"BUILDOS", build.OS},
		{"BUILDOSVERSION", build.OSVersion},
		{"BUILDARCH", build.Architecture},
		{"BUILDVARIANT", build.Variant},
		{"TARGETPLATFORM", platform.Format(p)},
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
// previous stages, named contexts and images.
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
		s.platform = c.opt.Platform
		if is.Platform != "" {
			if s.platform, err = c.stagePlatform(is.Platform, globals); err != nil {
				return c.locate(err, is.Location, "FROM")
			}
		}
		switch {
		case is.Name != "" && c.namedContext(is.Name) != "":
			// BuildKit: --build-context NAME=... replaces the stage NAME outright.
			s.replaced = c.namedContext(is.Name)
		case c.stageByName(base) != nil:
			// Only earlier stages can be a base: a later stage's name is an image name.
			// As in BuildKit, the stage is built for its base's platform.
			s.base = c.stageByName(base)
			s.platform = s.base.platform
		case strings.EqualFold(base, scratchName):
			s.from = copyFrom{scratch: true}
		case c.namedContext(base) != "":
			s.from = copyFrom{named: c.namedContext(base)}
		default:
			s.from = copyFrom{image: base}
		}
		if s.from.image != "" {
			s.cmdTotal = 1
		}
		for _, cmd := range is.Commands {
			switch cmd.(type) {
			case *instructions.AddCommand, *instructions.CopyCommand, *instructions.RunCommand, *instructions.WorkdirCommand:
				s.cmdTotal++
			}
		}
		if c.opt.MultiPlatform {
			s.prefix = platform.Format(s.platform) + " "
		}
		c.stages = append(c.stages, s)
	}
	if len(c.stages) == 1 {
		c.stages[0].display = ""
	}
	return nil
}

// stagePlatform expands and parses a FROM --platform value. Only linux stages can be
// built (their RUN steps run in a linux sandbox).
func (c *converter) stagePlatform(raw string, globals shell.EnvGetter) (ocispec.Platform, error) {
	v, _, err := c.lex.ProcessWord(raw, globals)
	if err != nil {
		return ocispec.Platform{}, withWord("--platform="+raw, err)
	}
	if strings.TrimSpace(v) == "" {
		return ocispec.Platform{}, withWord("--platform="+raw, errors.New("the platform expands to nothing"))
	}
	p, err := platform.Parse(v)
	if err != nil {
		return ocispec.Platform{}, withWord("--platform="+v, err)
	}
	if p.OS != "linux" {
		return ocispec.Platform{}, withWord("--platform="+v, fmt.Errorf("building a %s stage: %w (only linux stages are)", p.OS, errNotSupported))
	}
	return p, nil
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

// namedContext returns the Options.NamedContexts key that stands for name, "" for
// none. As in BuildKit, name is looked up in its short form ("alpine" for
// docker.io/library/alpine:latest), and "scratch" and "context" are never replaced.
func (c *converter) namedContext(name string) string {
	if len(c.opt.NamedContexts) == 0 || strings.EqualFold(name, scratchName) || strings.EqualFold(name, defaultContextName) {
		return ""
	}
	for _, k := range []string{familiarName(name), name} {
		if _, ok := c.opt.NamedContexts[k]; ok {
			return k
		}
	}
	return ""
}

// familiarName is ref as Docker prints it: no docker.io/library/ prefix, no :latest.
func familiarName(ref string) string {
	r, err := ggcrname.ParseReference(ref)
	if err != nil {
		return ref
	}
	repo := r.Context()
	out := repo.RepositoryStr()
	if reg := repo.RegistryStr(); reg != ggcrname.DefaultRegistry {
		out = reg + "/" + out
	} else if rest, ok := strings.CutPrefix(out, "library/"); ok && !strings.Contains(rest, "/") {
		out = rest
	}
	switch r := r.(type) {
	case ggcrname.Tag:
		if r.TagStr() != "latest" {
			out += ":" + r.TagStr()
		}
	case ggcrname.Digest:
		out += "@" + r.DigestStr()
	}
	return out
}

// linkSources classifies every COPY --from and RUN --mount from= of the stages that
// run their commands, so the stages they read are lowered first and the images and
// named contexts are resolved with the base images.
func (c *converter) linkSources() error {
	for _, s := range c.stages {
		if s.replaced != "" {
			continue
		}
		for _, cmd := range s.inst.Commands {
			if err := c.linkCommand(s, cmd); err != nil {
				return err
			}
		}
	}
	return nil
}

// linkCommand records what cmd reads besides the stage's own filesystem.
func (c *converter) linkCommand(s *stage, cmd instructions.Command) error {
	switch cmd := cmd.(type) {
	case *instructions.CopyCommand:
		if cmd.From == "" {
			return nil
		}
		from, err := c.copySource(cmd.From)
		if err != nil {
			return c.locate(withWord("--from="+cmd.From, err), cmd.Location(), "COPY")
		}
		c.froms[cmd] = from
		s.addRef(from)
	case *instructions.RunCommand:
		// Mounts are parsed before expansion here; BuildKit refuses variables in
		// from=, so the name is final.
		for _, m := range instructions.GetMounts(cmd) {
			if m.From == "" {
				continue
			}
			from, err := c.copySource(m.From)
			if err != nil {
				return c.locate(withWord("--mount", fmt.Errorf("from=%s: %w", m.From, err)), cmd.Location(), "RUN")
			}
			s.addRef(from)
		}
	}
	return nil
}

func (s *stage) addRef(from copyFrom) {
	switch {
	case from.stage != nil:
		if !slices.Contains(s.deps, from.stage) {
			s.deps = append(s.deps, from.stage)
		}
	case from.named != "" || from.image != "":
		s.refs = append(s.refs, from)
	}
}

// copySource classifies a COPY --from or RUN --mount from= name as BuildKit does: a
// number is a stage index, then a stage name, "scratch", a named context, and
// anything else is an image reference.
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
	if strings.EqualFold(name, scratchName) {
		return copyFrom{scratch: true}, nil
	}
	if k := c.namedContext(name); k != "" {
		return copyFrom{named: k}, nil
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

// resolveNeeded finds the stages the target needs and resolves what they read. ONBUILD
// triggers are known only once a base image is resolved, and a trigger can read more
// stages and images (ONBUILD COPY --from=...), so this repeats until nothing is added,
// as BuildKit does.
func (c *converter) resolveNeeded(ctx context.Context, target *stage) (map[*stage]bool, error) {
	for {
		needed := map[*stage]bool{}
		markNeeded(target, needed)
		c.resolveImages(ctx, needed)
		grew := false
		for _, s := range c.stages {
			if !needed[s] || s.triggersInit {
				continue
			}
			s.triggersInit = true
			before := len(s.deps) + len(s.refs)
			if err := c.initTriggers(s); err != nil {
				return nil, err
			}
			grew = grew || len(s.deps)+len(s.refs) > before
		}
		if !grew {
			return needed, nil
		}
	}
}

// resolveKey is the string handed to the resolver for from, "" when there is nothing
// to resolve.
func (c *converter) resolveKey(from copyFrom) string {
	if from.image != "" {
		return from.image
	}
	if from.named == "" {
		return ""
	}
	v := c.opt.NamedContexts[from.named]
	switch {
	case strings.HasPrefix(v, llb.ImageScheme):
		if ref := strings.TrimPrefix(v, llb.ImageScheme); ref != scratchName {
			return ref
		}
	case strings.HasPrefix(v, llb.OCILayoutScheme):
		return v
	}
	return ""
}

// image is the resolution of from for platform p, nil when it was not resolved.
func (c *converter) image(from copyFrom, p ocispec.Platform) *baseImage {
	return c.images[imageKey{c.resolveKey(from), platform.Format(p)}]
}

// resolveImages resolves every image the needed stages read, concurrently and once per
// reference and platform; failures are reported where the image is used. A stage's
// base is resolved for the stage's platform; what COPY --from and RUN --mount from=
// read, for the target platform (BuildKit makes them implicit stages without
// --platform).
func (c *converter) resolveImages(ctx context.Context, needed map[*stage]bool) {
	var keys []imageKey
	var platforms []ocispec.Platform
	add := func(from copyFrom, p ocispec.Platform) {
		k := imageKey{c.resolveKey(from), platform.Format(p)}
		if _, done := c.images[k]; k.ref != "" && !done && !slices.Contains(keys, k) {
			keys = append(keys, k)
			platforms = append(platforms, p)
		}
	}
	for _, s := range c.stages {
		if !needed[s] {
			continue
		}
		add(s.from, s.platform)
		if s.replaced != "" {
			add(copyFrom{named: s.replaced}, s.platform)
		}
		for _, r := range s.refs {
			add(r, c.opt.Platform)
		}
	}
	results := make([]*baseImage, len(keys))
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() { results[i] = c.resolve(ctx, k.ref, platforms[i]) })
	}
	wg.Wait()
	for i, k := range keys {
		c.images[k] = results[i]
	}
}

func (c *converter) resolve(ctx context.Context, ref string, p ocispec.Platform) *baseImage {
	if c.opt.Resolver == nil {
		return &baseImage{err: errors.New("no image resolver configured")}
	}
	pinned, dt, err := c.opt.Resolver.ResolveImageConfig(ctx, ref, p)
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

// namedState is the filesystem and image config of the named context key, as resolved
// for platform p. A local directory has no config (nil).
func (c *converter) namedState(key string, p ocispec.Platform, loc []parser.Range) (llb.State, *dockerspec.DockerOCIImage, error) {
	v := c.opt.NamedContexts[key]
	desc := "[context " + key + "] "
	scheme, rest, _ := strings.Cut(v, "://")
	switch scheme + "://" {
	case llb.ImageScheme, llb.OCILayoutScheme:
		layout := scheme+"://" == llb.OCILayoutScheme
		ref := rest
		if layout {
			ref = v // layouts are resolved under the whole value
		} else if rest == scratchName {
			return llb.Scratch(), nil, nil
		}
		bi := c.images[imageKey{ref, platform.Format(p)}]
		if bi == nil {
			return llb.State{}, nil, fmt.Errorf("named context %s=%s was not resolved", key, v)
		}
		if bi.err != nil {
			return llb.State{}, nil, fmt.Errorf("resolving named context %s=%s: %w", key, v, bi.err)
		}
		img := cloneImage(bi.img)
		if isLayerless(bi.img) {
			return llb.Scratch(), &img, nil
		}
		if layout {
			// The resolver pins a layout to a source identifier (oci-layout://...@sha256:...).
			st, err := llb.Source(bi.pinned, nil, c.meta(desc+"OCI load from client", loc))
			return st, &img, err
		}
		st, err := llb.Image(bi.pinned, c.meta(desc+bi.pinned, loc))
		return st, &img, err
	case llb.LocalScheme:
		if rest == "" {
			return llb.State{}, nil, fmt.Errorf("named context %s=%s: empty local name", key, v)
		}
		st, err := llb.Local(rest, llb.Meta{Description: desc + "load from client", IgnoreCache: c.opt.NoCache})
		return st, nil, err
	}
	return llb.State{}, nil, fmt.Errorf("named context %s=%s: unsupported source (want docker-image://, oci-layout:// or local://)", key, v)
}

// namedBase is a named context as the base of a stage built for p. A local directory
// becomes a copy of it on scratch: a stage's filesystem is a layer stack, which a
// client directory is not.
func (c *converter) namedBase(key string, p ocispec.Platform, loc []parser.Range) (llb.State, dockerspec.DockerOCIImage, bool, error) {
	st, img, err := c.namedState(key, p, loc)
	if err != nil {
		return llb.State{}, dockerspec.DockerOCIImage{}, false, err
	}
	if img != nil {
		img.Created = nil
		return st, *img, false, nil
	}
	base := emptyImage(p)
	if st.IsScratch() {
		return st, base, false, nil
	}
	cp, err := c.stamp(llb.Scratch().Copy(st, llb.CopyAction{Src: []string{"."}, Dest: "/", FollowSymlinks: true},
		c.meta("[context "+key+"] copy from client", loc)))
	return cp, base, true, err
}

// mountSource is the filesystem a RUN --mount from= (or COPY --from) names, for
// stage s: the build context for "", an earlier stage, scratch, a named context or an
// image (resolved by Convert beforehand, since it collects every from= of RUN --mount
// and COPY --from). Errors do not repeat from's name as a prefix.
func (c *converter) mountSource(s *stage, from string) (llb.State, error) {
	if from == "" {
		return c.context(), nil
	}
	src, err := c.copySource(from)
	if err != nil {
		return llb.State{}, err
	}
	return c.sourceState(s, src, from, "mounts")
}

// sourceState is the filesystem from names for stage s; verb says how s uses it, for
// the error about a stage that is not lowered yet.
func (c *converter) sourceState(s *stage, from copyFrom, name, verb string) (llb.State, error) {
	switch {
	case from.stage != nil:
		if from.stage.index >= s.index || !from.stage.done {
			return llb.State{}, fmt.Errorf("stage %q must be defined before the stage that %s it", name, verb)
		}
		return from.stage.state, nil
	case from.scratch:
		return llb.Scratch(), nil
	case from.named != "":
		st, _, err := c.namedState(from.named, c.opt.Platform, s.loc)
		return st, err
	}
	bi := c.image(from, c.opt.Platform)
	if bi == nil {
		return llb.State{}, fmt.Errorf("image %q was not resolved before lowering", from.image)
	}
	if bi.err != nil {
		msg := fmt.Sprintf("stage %q not found", name)
		if alt := suggest(name, c.stageNames()); alt != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", alt)
		}
		return llb.State{}, fmt.Errorf("%s, and resolving it as an image: %w", msg, bi.err)
	}
	if isLayerless(bi.img) {
		return llb.Scratch(), nil
	}
	return llb.Image(bi.pinned, c.meta("FROM "+bi.pinned, s.loc))
}

// dispatchStage lowers one stage: its base, the base's ONBUILD triggers, then each
// instruction in order.
func (c *converter) dispatchStage(s *stage) (err error) {
	defer func() {
		if err != nil {
			err = c.locate(err, s.inst.Location, "FROM")
		}
	}()
	s.loc = s.inst.Location
	switch {
	case s.replaced != "":
		st, img, _, err := c.namedBase(s.replaced, s.platform, s.inst.Location)
		if err != nil {
			return withWord(s.baseName, err)
		}
		s.state, s.img = st, img
		s.hist = make([]digest.Digest, len(s.img.History))
	case s.base != nil:
		b := s.base
		s.state, s.img = b.state, cloneImage(b.img)
		s.hist, s.env, s.args = slices.Clone(b.hist), slices.Clone(b.env), slices.Clone(b.args)
		s.workdirSet = b.workdirSet
	case s.from.scratch:
		s.state = llb.Scratch()
		s.img = emptyImage(s.platform)
	case s.from.named != "":
		st, img, copied, err := c.namedBase(s.from.named, s.platform, s.inst.Location)
		if err != nil {
			return withWord(s.baseName, err)
		}
		s.state, s.img = st, img
		s.hist = make([]digest.Digest, len(s.img.History))
		if copied {
			s.commit("FROM "+s.baseName+" # local context", st.Vertex().Digest())
		}
	default:
		bi := c.image(s.from, s.platform)
		if bi.err != nil {
			return withWord(s.baseName, fmt.Errorf("resolving image: %w", bi.err))
		}
		c.checkImagePlatform(s, bi)
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
	// Triggers run once, in the first stage built on the base: BuildKit does not pass
	// them on.
	s.img.Config.OnBuild = nil
	if s.base == nil {
		if _, ok := lookupEnv(s.img.Config.Env, "PATH"); !ok {
			s.img.Config.Env = append(s.img.Config.Env, "PATH="+defaultPathEnv)
		}
		s.env = slices.Clone(s.img.Config.Env)
	}
	if s.replaced != "" {
		s.done = true
		return nil
	}
	for _, t := range s.triggers {
		s.onbuild = true
		err := c.dispatch(s, t.cmd)
		s.onbuild = false
		if err != nil {
			return c.triggerError(s, t.text, err)
		}
	}
	for _, cmd := range s.inst.Commands {
		if err := c.dispatch(s, cmd); err != nil {
			return err
		}
	}
	s.done = true
	return nil
}

// checkImagePlatform warns, as BuildKit's InvalidBaseImagePlatform rule does, when the
// base image resolved for s says it is for another platform (a single-platform image
// used as a base for another platform: its RUN steps will run the wrong binaries).
// Configs that name no platform are not blamed.
func (c *converter) checkImagePlatform(s *stage, bi *baseImage) {
	have := ocispec.Platform{OS: bi.img.OS, Architecture: bi.img.Architecture, Variant: bi.img.Variant}
	if have.OS == "" || have.Architecture == "" {
		return
	}
	have = platform.Normalize(have)
	if have.OS != s.platform.OS || have.Architecture != s.platform.Architecture {
		msg := linter.RuleInvalidBaseImagePlatform.Format(s.baseName, platform.Format(s.platform), platform.Format(have))
		c.lint.Run(&linter.RuleInvalidBaseImagePlatform, s.inst.Location, msg)
	}
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
		// Layers made by this build's RUN, COPY, ADD and WORKDIR carry it too.
		SourceDateEpoch: c.epochTime(),
		RunPlatforms:    maps.Clone(c.runs),
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
	prefix := "[" + s.prefix
	if s.display != "" {
		prefix += s.display + " "
	}
	if s.onbuild {
		text = "ONBUILD " + text
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
