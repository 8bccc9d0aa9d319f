package dockerfile

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/builderdev/builder/llb"
)

// dispatch lowers one instruction of stage s.
func (c *converter) dispatch(s *stage, cmd instructions.Command) (err error) {
	defer func() {
		if err != nil {
			err = c.locate(err, cmd.Location(), strings.ToUpper(cmd.Name()))
		}
	}()
	s.loc = cmd.Location()
	// Words expand with the environment before the instruction (ENV a=1 b=$a sees the
	// old a, as in Docker). ARG expands its default itself: a --build-arg wins.
	if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
		if _, isArg := cmd.(*instructions.ArgCommand); !isArg {
			env := shell.EnvsFromSlice(s.env)
			err := ex.Expand(func(word string) (string, error) {
				v, _, err := c.lex.ProcessWord(word, env)
				return v, err
			})
			if _, isRun := cmd.(*instructions.RunCommand); isRun && err != nil {
				// RUN expands only its --mount values: say which flag was wrong.
				return withWord("--mount", err)
			}
			if err != nil {
				return err
			}
		}
	}
	// COPY <<EOF contents expand unless the delimiter was quoted; quotes in the text
	// are kept and the escape character is always a backslash, as in BuildKit.
	if ex, ok := cmd.(instructions.SupportsSingleWordExpansionRaw); ok {
		lex := shell.NewLex('\\')
		lex.SkipProcessQuotes = true
		env := shell.EnvsFromSlice(s.env)
		err := ex.ExpandRaw(func(word string) (string, error) {
			v, _, err := lex.ProcessWord(word, env)
			return v, err
		})
		if err != nil {
			return err
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
			if kv.NoDelim {
				c.lint.Run(&linter.RuleLegacyKeyValueFormat, cmd.Location(), linter.RuleLegacyKeyValueFormat.Format(cmd.Name()))
			}
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
			if kv.NoDelim {
				c.lint.Run(&linter.RuleLegacyKeyValueFormat, cmd.Location(), linter.RuleLegacyKeyValueFormat.Format(cmd.Name()))
			}
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
			c.lintShellForm(s, cmd)
			args = withShell(s.img.Config.Shell, args)
		}
		s.img.Config.Cmd = args
		s.cmdSet = true
		s.commit(fmt.Sprintf("CMD %q", args), "")
	case *instructions.EntrypointCommand:
		args := cmd.CmdLine
		if cmd.PrependShell {
			c.lintShellForm(s, cmd)
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
		// Recorded for the first stage or image built FROM this one (see initTriggers);
		// like BuildKit, no history entry.
		s.img.Config.OnBuild = append(s.img.Config.OnBuild, cmd.Expression)
	default:
		return errNotSupported
	}
	return nil
}

var validSignal = regexp.MustCompile(`^([0-9]{1,2}|(?i:(SIG)?[A-Z][A-Z0-9]*([+-][0-9]+)?))$`)

func (c *converter) dispatchWorkdir(s *stage, w *instructions.WorkdirCommand) error {
	if !s.workdirSet && !path.IsAbs(w.Path) {
		// BuildKit warns once per stage chain: the first WORKDIR should not depend on
		// the base image's.
		c.lint.Run(&linter.RuleWorkdirRelativePath, w.Location(), linter.RuleWorkdirRelativePath.Format(w.Path))
	}
	s.workdirSet = true
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
	st, err := c.stamp(s.state.Mkdir(mk, c.meta(s.describe(c.display(w.String(), shell.EnvsFromSlice(s.env))), w.Location())))
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

// lintShellForm reports a shell-form CMD or ENTRYPOINT when no SHELL is set: the
// process does not get signals.
func (c *converter) lintShellForm(s *stage, cmd instructions.Command) {
	if len(s.img.Config.Shell) == 0 {
		c.lint.Run(&linter.RuleJSONArgsRecommended, cmd.Location(), linter.RuleJSONArgsRecommended.Format(cmd.Name()))
	}
}

// trigger is one ONBUILD instruction of a stage's base, parsed for that stage.
type trigger struct {
	text string
	cmd  instructions.Command
}

// initTriggers parses the ONBUILD triggers of s's base and links what they read. The
// base is an earlier stage (its ONBUILD instructions), an image or a named context
// (the config's OnBuild list, resolved by now). BuildKit runs them right after FROM,
// in order, as if written there.
func (c *converter) initTriggers(s *stage) error {
	if s.replaced != "" {
		return nil
	}
	var texts []string
	switch {
	case s.base != nil && s.base.replaced != "":
		texts = c.configTriggers(copyFrom{named: s.base.replaced}, s.base.platform)
	case s.base != nil:
		for _, cmd := range s.base.inst.Commands {
			if ob, ok := cmd.(*instructions.OnbuildCommand); ok {
				texts = append(texts, ob.Expression)
			}
		}
	default:
		texts = c.configTriggers(s.from, s.platform)
	}
	for _, text := range texts {
		cmd, err := c.parseTrigger(s, text)
		if err != nil {
			return c.triggerError(s, text, err)
		}
		if err := c.linkCommand(s, cmd); err != nil {
			return c.triggerError(s, text, err)
		}
		s.triggers = append(s.triggers, trigger{text: text, cmd: cmd})
	}
	s.cmdTotal += len(s.triggers)
	return nil
}

// configTriggers is the OnBuild list of a resolved image or named context (resolved
// for platform p); nil when it could not be resolved (dispatchStage reports that).
func (c *converter) configTriggers(from copyFrom, p ocispec.Platform) []string {
	bi := c.image(from, p)
	if bi == nil || bi.err != nil {
		return nil
	}
	return bi.img.Config.OnBuild
}

// parseTrigger parses one trigger as an instruction located at s's FROM line.
func (c *converter) parseTrigger(s *stage, text string) (instructions.Command, error) {
	res, err := parser.Parse(strings.NewReader(text))
	if err != nil {
		return nil, err
	}
	if len(res.AST.Children) != 1 {
		return nil, errors.New("a trigger must be a single instruction")
	}
	node := res.AST.Children[0]
	node.StartLine, node.EndLine = lineRange(s.inst.Location)
	v, err := instructions.ParseInstructionWithLinter(node, c.lint)
	if err != nil {
		return nil, err
	}
	cmd, ok := v.(instructions.Command)
	if !ok {
		return nil, fmt.Errorf("%s isn't allowed as an ONBUILD trigger", strings.ToUpper(node.Value))
	}
	return cmd, nil
}

// triggerError reports err of a trigger at s's FROM line, naming the trigger.
func (c *converter) triggerError(s *stage, text string, err error) error {
	var fe *Error
	var le *parser.LocationError
	switch {
	case errors.As(err, &fe):
		err = fe.Err
		if fe.Instruction != "" {
			err = fmt.Errorf("%s: %w", fe.Instruction, fe.Err)
		}
	case errors.As(err, &le):
		err = le.Unwrap()
	}
	start, end := lineRange(s.inst.Location)
	return &Error{File: c.file, Line: start, EndLine: end, Instruction: "FROM " + s.baseName,
		Err: fmt.Errorf("ONBUILD trigger %q: %w", text, err)}
}
