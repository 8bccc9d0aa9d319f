package dockerfile

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/builderdev/builder/llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// dispatch lowers one instruction of stage s.
func (c *converter) dispatch(s *stage, cmd instructions.Command) (err error) {
	defer func() {
		if err != nil {
			err = c.locate(err, cmd.Location(), strings.ToUpper(cmd.Name()))
		}
	}()
	// Words expand with the environment before the instruction (ENV a=1 b=$a sees the
	// old a, as in Docker). ARG expands its default itself: a --build-arg wins.
	if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
		if _, isArg := cmd.(*instructions.ArgCommand); !isArg {
			env := shell.EnvsFromSlice(s.env)
			err := ex.Expand(func(word string) (string, error) {
				v, _, err := c.lex.ProcessWord(word, env)
				return v, err
			})
			if err != nil {
				return err
			}
		}
	}

	switch cmd := cmd.(type) {
	case *instructions.RunCommand:
		return c.dispatchRun(s, cmd)
	case *instructions.CopyCommand:
		return c.dispatchCopyCommand(s, cmd)
	case *instructions.AddCommand:
		return c.dispatchAdd(s, cmd)
	case *instructions.WorkdirCommand:
		return c.dispatchWorkdir(s, cmd)
	case *instructions.EnvCommand:
		parts := make([]string, 0, len(cmd.Env))
		for _, kv := range cmd.Env {
			s.env = setEnv(s.env, kv.Key, kv.Value)
			s.img.Config.Env = setEnv(s.img.Config.Env, kv.Key, kv.Value)
			parts = append(parts, kv.String())
		}
		s.commit("ENV "+strings.Join(parts, " "), "")
	case *instructions.ArgCommand:
		return c.dispatchArg(s, cmd)
	case *instructions.UserCommand:
		s.img.Config.User = cmd.User
		s.commit("USER "+cmd.User, "")
	case *instructions.LabelCommand:
		if s.img.Config.Labels == nil {
			s.img.Config.Labels = map[string]string{}
		}
		parts := make([]string, 0, len(cmd.Labels))
		for _, kv := range cmd.Labels {
			s.img.Config.Labels[kv.Key] = kv.Value
			parts = append(parts, kv.String())
		}
		s.commit("LABEL "+strings.Join(parts, " "), "")
	case *instructions.MaintainerCommand:
		// Docker's reference: MAINTAINER sets the image's Author field.
		s.img.Author = cmd.Maintainer
		s.commit("MAINTAINER "+cmd.Maintainer, "")
	case *instructions.ExposeCommand:
		return c.dispatchExpose(s, cmd)
	case *instructions.CmdCommand:
		args := cmd.CmdLine
		if cmd.PrependShell {
			args = withShell(s.img.Config.Shell, args)
		}
		s.img.Config.Cmd = args
		s.cmdSet = true
		s.commit(fmt.Sprintf("CMD %q", args), "")
	case *instructions.EntrypointCommand:
		args := cmd.CmdLine
		if cmd.PrependShell {
			args = withShell(s.img.Config.Shell, args)
		}
		s.img.Config.Entrypoint = args
		if !s.cmdSet {
			// A CMD inherited from the base was written for the old entrypoint.
			s.img.Config.Cmd = nil
		}
		s.commit(fmt.Sprintf("ENTRYPOINT %q", args), "")
	case *instructions.ShellCommand:
		s.img.Config.Shell = slices.Clone(cmd.Shell)
		s.commit(fmt.Sprintf("SHELL %v", cmd.Shell), "")
	case *instructions.StopSignalCommand:
		if !validSignal.MatchString(cmd.Signal) {
			return withWord(cmd.Signal, errors.New("invalid signal: use a name like SIGTERM or a number"))
		}
		s.img.Config.StopSignal = cmd.Signal
		s.commit("STOPSIGNAL "+cmd.Signal, "")
	case *instructions.VolumeCommand:
		if s.img.Config.Volumes == nil {
			s.img.Config.Volumes = map[string]struct{}{}
		}
		for _, v := range cmd.Volumes {
			if v == "" {
				return errors.New("volume path cannot be empty")
			}
			s.img.Config.Volumes[v] = struct{}{}
		}
		s.commit(fmt.Sprintf("VOLUME %v", cmd.Volumes), "")
	case *instructions.HealthCheckCommand:
		hc := *cmd.Health
		hc.Test = slices.Clone(hc.Test)
		s.img.Config.Healthcheck = &hc
		s.commit(fmt.Sprintf("HEALTHCHECK %+v", hc), "")
	case *instructions.OnbuildCommand:
		// Recorded for images built FROM this one; running triggers is not supported yet
		// (dispatchStage refuses a base that has them).
		s.img.Config.OnBuild = append(s.img.Config.OnBuild, cmd.Expression)
	default:
		return errNotSupported
	}
	return nil
}

var validSignal = regexp.MustCompile(`^([0-9]{1,2}|(?i:(SIG)?[A-Z][A-Z0-9]*([+-][0-9]+)?))$`)

func (c *converter) dispatchRun(s *stage, r *instructions.RunCommand) error {
	if len(r.Files) > 0 {
		return withWord("<<"+r.Files[0].Name, fmt.Errorf("heredocs: %w", errNotSupported))
	}
	for _, f := range r.FlagsUsed {
		if f != "network" {
			return withWord("--"+f, errNotSupported)
		}
	}
	network := c.opt.Network
	switch instructions.GetNetwork(r) {
	case instructions.NetworkNone:
		network = llb.NetworkNone
	case instructions.NetworkHost:
		network = llb.NetworkHost
	}
	args := r.CmdLine
	if r.PrependShell {
		args = withShell(s.img.Config.Shell, args)
	}
	if len(args) == 0 {
		return errors.New("no command to run")
	}
	env := shell.EnvsFromSlice(s.env)
	st, err := s.state.Run(llb.ExecOp{
		Args:    args,
		Env:     llb.SortedEnv(s.env),
		Cwd:     workdir(s),
		User:    s.img.Config.User,
		Network: network,
	}, c.meta(s.describe(c.display(r.String(), env)), r.Location()))
	if err != nil {
		return err
	}
	s.state = st
	s.commit("RUN "+runCommandString(args, s.args, env)+" # buildkit", st.Vertex().Digest())
	return nil
}

// runCommandString is RUN's history entry: build args in scope come first as
// "|N K=V ...", as Docker does, so two builds with other args do not look the same.
func runCommandString(args []string, buildArgs []instructions.KeyValuePairOptional, env shell.EnvGetter) string {
	var kvs []string
	at := map[string]int{}
	for _, a := range buildArgs {
		v, ok := env.Get(a.Key)
		if !ok {
			v = a.ValueString()
		}
		if i, ok := at[a.Key]; ok {
			kvs[i] = a.Key + "=" + v
			continue
		}
		at[a.Key] = len(kvs)
		kvs = append(kvs, a.Key+"="+v)
	}
	if len(kvs) > 0 {
		kvs = append([]string{fmt.Sprintf("|%d", len(kvs))}, kvs...)
	}
	return strings.Join(append(kvs, args...), " ")
}

// copySpec is what COPY and ADD share.
type copySpec struct {
	name  string // COPY or ADD
	text  string // the instruction as written, for the description
	srcs  []string
	dest  string
	chown string
	chmod string
	from  llb.State
	loc   []parser.Range
}

func (c *converter) dispatchCopyCommand(s *stage, cp *instructions.CopyCommand) error {
	switch {
	case len(cp.SourceContents) > 0:
		return withWord("<<"+cp.SourceContents[0].Path, fmt.Errorf("heredocs: %w", errNotSupported))
	case cp.Parents:
		return withWord("--parents", errNotSupported)
	case len(cp.ExcludePatterns) > 0:
		return withWord("--exclude", errNotSupported)
	}
	spec := copySpec{name: "COPY", text: cp.String(), srcs: cp.SourcePaths, dest: cp.DestPath,
		chown: cp.Chown, chmod: cp.Chmod, loc: cp.Location()}
	if cp.From == "" {
		spec.from = c.context()
		return c.dispatchCopy(s, spec)
	}
	from := c.froms[cp]
	switch {
	case from.stage != nil && from.stage.index >= s.index:
		return withWord("--from="+cp.From, fmt.Errorf("stage %q must be defined before the stage that copies from it", cp.From))
	case from.stage != nil:
		spec.from = from.stage.state
	default:
		bi := c.images[from.image]
		if bi.err != nil {
			msg := fmt.Sprintf("stage %q not found", cp.From)
			if alt := suggest(cp.From, c.stageNames()); alt != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", alt)
			}
			return withWord("--from="+cp.From, fmt.Errorf("%s, and resolving it as an image: %w", msg, bi.err))
		}
		if !isLayerless(bi.img) {
			st, err := llb.Image(bi.pinned, c.meta("FROM "+bi.pinned, cp.Location()))
			if err != nil {
				return err
			}
			spec.from = st
		}
	}
	if err := c.dispatchCopy(s, spec); err != nil {
		return withWord("--from="+cp.From, err)
	}
	return nil
}

func (c *converter) dispatchAdd(s *stage, a *instructions.AddCommand) error {
	switch {
	case len(a.SourceContents) > 0:
		return withWord("<<"+a.SourceContents[0].Path, fmt.Errorf("heredocs: %w", errNotSupported))
	case a.Checksum != "":
		return withWord("--checksum", errNotSupported)
	case a.KeepGitDir != nil:
		return withWord("--keep-git-dir", errNotSupported)
	case a.Unpack != nil:
		return withWord("--unpack", errNotSupported)
	case len(a.ExcludePatterns) > 0:
		return withWord("--exclude", errNotSupported)
	}
	for _, src := range a.SourcePaths {
		if isRemote(src) {
			return withWord(src, fmt.Errorf("adding from a URL or git repository: %w", errNotSupported))
		}
	}
	return c.dispatchCopy(s, copySpec{name: "ADD", text: a.String(), srcs: a.SourcePaths, dest: a.DestPath,
		chown: a.Chown, chmod: a.Chmod, from: c.context(), loc: a.Location()})
}

// isRemote reports the ADD sources BuildKit fetches instead of reading the context.
func isRemote(src string) bool {
	for _, p := range []string{"http://", "https://", "git@", "git://", "ssh://"} {
		if strings.HasPrefix(src, p) {
			return true
		}
	}
	return false
}

func (c *converter) dispatchCopy(s *stage, spec copySpec) error {
	if len(spec.srcs) == 0 {
		return errors.New("no source files")
	}
	a := llb.CopyAction{
		Dest:           destPath(workdir(s), spec.dest),
		AllowWildcard:  true,
		FollowSymlinks: true,
	}
	for _, p := range spec.srcs {
		a.Src = append(a.Src, cleanSource(p))
	}
	if spec.chown != "" {
		a.Chown = parseChown(spec.chown)
	}
	if spec.chmod != "" {
		m, err := strconv.ParseUint(spec.chmod, 8, 32)
		if err != nil || m > 0o7777 {
			return withWord("--chmod="+spec.chmod, errors.New("mode must be an octal number between 0 and 07777"))
		}
		mode := uint32(m)
		a.Mode = &mode
	}
	if spec.from.IsScratch() {
		return errors.New("copying from an empty filesystem (scratch): nothing to copy")
	}
	env := shell.EnvsFromSlice(s.env)
	st, err := s.state.Copy(spec.from, a, c.meta(s.describe(c.display(spec.text, env)), spec.loc))
	if err != nil {
		return err
	}
	s.state = st

	msg := []string{spec.name}
	if spec.chown != "" {
		msg = append(msg, "--chown="+spec.chown)
	}
	if spec.chmod != "" {
		msg = append(msg, "--chmod="+spec.chmod)
	}
	msg = append(msg, spec.srcs...)
	msg = append(msg, spec.dest, "# buildkit")
	s.commit(strings.Join(msg, " "), st.Vertex().Digest())
	return nil
}

// context is the build context source, one vertex for the whole build.
func (c *converter) context() llb.State {
	if c.local == nil {
		// Local cannot fail: its identifier is never empty.
		st, _ := llb.Local(c.opt.ContextName, llb.Meta{Description: "[internal] load build context", IgnoreCache: c.opt.NoCache})
		c.local = &st
	}
	return *c.local
}

func (c *converter) dispatchWorkdir(s *stage, w *instructions.WorkdirCommand) error {
	wd := w.Path
	if !path.IsAbs(wd) {
		wd = path.Join(workdir(s), wd)
	}
	wd = path.Clean(wd)
	s.img.Config.WorkingDir = wd
	if wd == "/" {
		s.commit("WORKDIR "+wd, "")
		return nil
	}
	mk := llb.MkdirAction{Path: wd, Mode: 0o755, MakeParents: true}
	if u := s.img.Config.User; u != "" {
		// BuildKit creates the directory as the current user, so it can write there.
		mk.Chown = parseChown(u)
	}
	st, err := s.state.Mkdir(mk, c.meta(s.describe(c.display(w.String(), shell.EnvsFromSlice(s.env))), w.Location()))
	if err != nil {
		return err
	}
	s.state = st
	s.commit("WORKDIR "+wd, st.Vertex().Digest())
	return nil
}

// dispatchArg declares build args in the stage. The value is, in order: the
// --build-arg, the default (expanded), the global ARG of that name; ARGs with a value
// are in RUN's environment (not in the image's).
func (c *converter) dispatchArg(s *stage, a *instructions.ArgCommand) error {
	parts := make([]string, 0, len(a.Args))
	for _, kv := range a.Args {
		if v, ok := c.opt.BuildArgs[kv.Key]; ok {
			kv.Value = &v
		} else if kv.Value != nil {
			v, _, err := c.lex.ProcessWord(*kv.Value, shell.EnvsFromSlice(s.env))
			if err != nil {
				return withWord(kv.Key, err)
			}
			kv.Value = &v
		} else if v, ok := lookupEnv(c.global, kv.Key); ok {
			kv.Value = &v
		}
		part := kv.Key
		if kv.Value != nil {
			s.env = setEnv(s.env, kv.Key, *kv.Value)
			part += "=" + *kv.Value
		}
		s.args = append(s.args, kv)
		parts = append(parts, part)
	}
	s.commit("ARG "+strings.Join(parts, " "), "")
	return nil
}

func (c *converter) dispatchExpose(s *stage, e *instructions.ExposeCommand) error {
	env := shell.EnvsFromSlice(s.env)
	var ports []string
	for _, p := range e.Ports {
		words, err := c.lex.ProcessWords(p, env)
		if err != nil {
			return withWord(p, err)
		}
		for _, w := range words {
			ps, err := parsePort(w)
			if err != nil {
				return withWord(w, err)
			}
			ports = append(ports, ps...)
		}
	}
	if s.img.Config.ExposedPorts == nil {
		s.img.Config.ExposedPorts = map[string]struct{}{}
	}
	for _, p := range ports {
		s.img.Config.ExposedPorts[p] = struct{}{}
	}
	s.commit(fmt.Sprintf("EXPOSE %v", ports), "")
	return nil
}

// parsePort turns [ip:][hostport:]port[-end][/proto] into "port/proto" entries; only
// the container side matters to an image.
func parsePort(spec string) ([]string, error) {
	raw, proto, ok := strings.Cut(spec, "/")
	proto = strings.ToLower(proto)
	if !ok || proto == "" {
		proto = "tcp"
	}
	switch proto {
	case "tcp", "udp", "sctp":
	default:
		return nil, fmt.Errorf("invalid protocol %q", proto)
	}
	if i := strings.LastIndex(raw, ":"); i >= 0 {
		raw = raw[i+1:]
	}
	lo, hi, isRange := strings.Cut(raw, "-")
	start, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("invalid port %q", raw)
	}
	end := start
	if isRange {
		if end, err = strconv.ParseUint(hi, 10, 16); err != nil || end < start {
			return nil, fmt.Errorf("invalid port range %q", raw)
		}
	}
	var out []string
	for p := start; p <= end; p++ {
		out = append(out, fmt.Sprintf("%d/%s", p, proto))
	}
	return out, nil
}

// display is an instruction as progress shows it: variables expanded where set, the
// keyword upper case.
func (c *converter) display(text string, env shell.EnvGetter) string {
	if v, _, err := c.show.ProcessWord(text, env); err == nil {
		text = v
	}
	kw, rest, ok := strings.Cut(text, " ")
	if !ok {
		return strings.ToUpper(kw)
	}
	return strings.ToUpper(kw) + " " + rest
}

// withShell prepends the stage's SHELL (default /bin/sh -c) to a shell-form command.
func withShell(sh []string, args []string) []string {
	if len(sh) == 0 {
		sh = []string{"/bin/sh", "-c"}
	}
	return append(slices.Clone(sh), strings.Join(args, " "))
}

func workdir(s *stage) string {
	if wd := s.img.Config.WorkingDir; wd != "" {
		return wd
	}
	return "/"
}

// cleanSource makes a COPY source relative to the root of its input; ".." cannot climb
// out of it.
func cleanSource(p string) string {
	p = path.Clean("/" + p)
	if p == "/" {
		return "."
	}
	return p[1:]
}

// destPath makes a COPY destination absolute against wd, keeping a trailing "/" (and
// adding one for "." and ""), which means "into this directory".
func destPath(wd, p string) string {
	dir := p == "" || p == "." || strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.")
	if !path.IsAbs(p) {
		p = path.Join(wd, p)
	}
	p = path.Clean(p)
	if dir && p != "/" {
		p += "/"
	}
	return p
}

func parseChown(s string) *llb.ChownOpt {
	user, group, _ := strings.Cut(s, ":")
	return &llb.ChownOpt{User: user, Group: group}
}
