package dockerfile

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/builderdev/builder/llb"
)

const (
	// heredocDir is where a heredoc with a shebang is mounted to be executed, as in
	// BuildKit: RUN <<EOF with "#!/usr/bin/env python" runs /dev/pipes/EOF.
	heredocDir = "/dev/pipes"
	// sshAgentDir holds the default ssh agent sockets: ssh_agent.0, ssh_agent.1, ...
	sshAgentDir = "/run/buildkit"
	secretsDir  = "/run/secrets"
)

func (c *converter) dispatchRun(s *stage, r *instructions.RunCommand) error {
	for _, f := range r.FlagsUsed {
		switch f {
		case "network", "mount", "security":
		default:
			return withWord("--"+f, errNotSupported)
		}
	}
	if instructions.GetSecurity(r) == instructions.SecurityInsecure {
		return withWord("--security=insecure", errors.New("needs the build to allow security.insecure: not supported"))
	}
	network := c.opt.Network
	switch instructions.GetNetwork(r) {
	case instructions.NetworkNone:
		network = llb.NetworkNone
	case instructions.NetworkHost:
		network = llb.NetworkHost
	}

	text := r.String()
	args := r.CmdLine
	var mounts []llb.Mount
	var froms []llb.State
	if len(r.Files) > 0 {
		hd, err := c.heredocRun(r)
		if err != nil {
			return err
		}
		args = hd.args
		if hd.lone {
			text += " (" + hd.summary + ")"
		}
		if hd.script != nil {
			mounts = append(mounts, llb.Mount{Type: llb.MountBind, Target: heredocDir})
			froms = append(froms, *hd.script)
		}
	}
	if r.PrependShell {
		args = withShell(s.img.Config.Shell, args)
	}
	if len(args) == 0 {
		return errors.New("no command to run")
	}

	env := slices.Clone(s.env)
	ms, mfroms, err := c.runMounts(s, r)
	if err != nil {
		return err
	}
	mounts = append(mounts, ms...)
	froms = append(froms, mfroms...)
	for _, m := range ms {
		if m.Type == llb.MountSSH {
			// The first agent is the one ssh clients find, unless the Dockerfile chose.
			if _, ok := lookupEnv(env, "SSH_AUTH_SOCK"); !ok {
				env = append(env, "SSH_AUTH_SOCK="+m.Target)
			}
			break
		}
	}

	st, err := s.state.RunMounts(llb.ExecOp{
		Args:     args,
		Env:      llb.SortedEnv(env),
		Cwd:      workdir(s),
		User:     s.img.Config.User,
		Network:  network,
		Mounts:   mounts,
		ProxyEnv: c.proxyEnv(s),
		// Set only with SOURCE_DATE_EPOCH, so other builds keep their cache keys.
		SourceDateEpoch: c.epoch,
	}, froms, c.meta(s.describe(c.display(text, maskSecretEnv(s.env, ms))), r.Location()))
	if err != nil {
		return err
	}
	s.state = st
	c.runs[st.Vertex().Digest()] = s.platform
	s.commit("RUN "+runCommandString(args, s.args, shell.EnvsFromSlice(s.env))+" # buildkit", st.Vertex().Digest())
	return nil
}

// heredocCommand is a RUN with heredocs, rewritten the way BuildKit runs it.
type heredocCommand struct {
	args    []string   // before the shell is prepended
	lone    bool       // the heredoc is the whole command
	summary string     // first line of a lone heredoc, for the description
	script  *llb.State // a lone heredoc with a shebang, to mount at heredocDir
}

// heredocRun lowers RUN <<EOF. A lone heredoc is the whole command: its body runs in
// the shell, or, when it starts with "#!", is written as an executable and run by path
// (so any interpreter works). Any other use (cat <<A > /a, several heredocs) is a shell
// heredoc: the bodies are put back after the command line for the shell to read.
// Bodies are never expanded here; that is the shell's job, as in BuildKit.
func (c *converter) heredocRun(r *instructions.RunCommand) (heredocCommand, error) {
	if len(r.CmdLine) != 1 || !r.PrependShell {
		return heredocCommand{}, fmt.Errorf("heredoc in a RUN that is not in shell form: %q", r.CmdLine)
	}
	f := r.Files[0]
	if parser.MustParseHeredoc(r.CmdLine[0]) == nil {
		var b strings.Builder
		b.WriteString(r.CmdLine[0])
		for _, f := range r.Files {
			b.WriteString("\n")
			b.WriteString(f.Data)
			b.WriteString(f.Name)
		}
		return heredocCommand{args: []string{b.String()}}, nil
	}
	data := f.Data
	if f.Chomp {
		data = parser.ChompHeredocContent(data)
	}
	hd := heredocCommand{args: []string{data}, lone: true, summary: summarizeHeredoc(f.Data)}
	if strings.HasPrefix(data, "#!") {
		if f.Name == "." || f.Name == ".." || strings.Contains(f.Name, "/") {
			return heredocCommand{}, withWord("<<"+f.Name, errors.New("a heredoc run as a script needs a file name as its delimiter"))
		}
		st, err := llb.Scratch().Mkfile(llb.MkfileAction{Path: path.Join("/", f.Name), Data: []byte(data), Mode: 0o755},
			c.meta("[internal] preparing inline document", nil))
		if err != nil {
			return heredocCommand{}, err
		}
		hd.script = &st
		hd.args = []string{path.Join(heredocDir, f.Name)}
	}
	return hd, nil
}

// summarizeHeredoc is the first line of a heredoc, "..." marking that more follow.
func summarizeHeredoc(doc string) string {
	doc = strings.TrimSpace(doc)
	first, _, more := strings.Cut(strings.ReplaceAll(doc, "\r\n", "\n"), "\n")
	if more {
		first += "..."
	}
	return first
}

// maskSecretEnv hides the variables secrets are exposed as from the description, so
// "RUN --mount=type=secret,id=t,env=TOKEN curl -H $TOKEN" reads "-H ****" (the value
// is never known here; this only shows where a secret goes).
func maskSecretEnv(env []string, mounts []llb.Mount) shell.EnvGetter {
	masked := false
	for _, m := range mounts {
		if m.Type == llb.MountSecret && m.Env != "" {
			if !masked {
				// setEnv writes in place: never into the stage's env.
				env, masked = slices.Clone(env), true
			}
			env = setEnv(env, m.Env, "****")
		}
	}
	return shell.EnvsFromSlice(env)
}

// runMounts lowers RUN --mount flags, whose values dispatch has already expanded with
// the stage's environment. from[i] is what mount i reads.
func (c *converter) runMounts(s *stage, r *instructions.RunCommand) (mounts []llb.Mount, from []llb.State, err error) {
	nssh := 0
	for _, m := range instructions.GetMounts(r) {
		lm, st, err := c.runMount(s, m, &nssh)
		if err != nil {
			return nil, nil, withWord("--mount", err)
		}
		mounts = append(mounts, lm)
		from = append(from, st)
	}
	return mounts, from, nil
}

func (c *converter) runMount(s *stage, m *instructions.Mount, nssh *int) (llb.Mount, llb.State, error) {
	t := string(m.Type)
	lm := llb.Mount{Type: t, Input: llb.NoInput}
	if m.Mode != nil && *m.Mode > 0o7777 {
		return lm, llb.State{}, fmt.Errorf("mode=%o: must be at most 7777", *m.Mode)
	}
	mode, uid, gid := ptr32(m.Mode), ptr32(m.UID), ptr32(m.GID)
	switch m.Type {
	case instructions.MountTypeSecret:
		return secretMount(m, mode, uid, gid)
	case instructions.MountTypeSSH:
		return sshMount(m, mode, uid, gid, nssh)
	}

	if m.Target == "" {
		return lm, llb.State{}, fmt.Errorf("type=%s: target is required", t)
	}
	target := m.Target
	if !path.IsAbs(target) {
		target = path.Join(workdir(s), target)
	}
	target = path.Clean(target)
	if target == "/" {
		return lm, llb.State{}, fmt.Errorf("target=%s: cannot mount over the root filesystem", m.Target)
	}
	lm.Target = target
	lm.ReadWrite = !m.ReadOnly

	switch m.Type {
	case instructions.MountTypeTmpfs:
		if m.From != "" {
			return lm, llb.State{}, fmt.Errorf("from=%s: a tmpfs mount has no source", m.From)
		}
		if m.SizeLimit < 0 {
			return lm, llb.State{}, fmt.Errorf("size=%d: must not be negative", m.SizeLimit)
		}
		lm.Size = m.SizeLimit
		return lm, llb.Scratch(), nil
	case instructions.MountTypeCache:
		lm.CacheID = m.CacheID
		if lm.CacheID == "" {
			// BuildKit's default: the target as written, so two stages mounting the
			// same path share the cache.
			lm.CacheID = path.Clean(m.Target)
		}
		lm.Sharing = string(m.CacheSharing)
		if lm.Sharing == "" {
			lm.Sharing = llb.SharingShared
		}
		lm.Mode, lm.UID, lm.GID = mode, uid, gid
		// Without from= a cache starts empty, not from the build context.
		if m.From == "" {
			return lm, llb.Scratch(), nil
		}
	case instructions.MountTypeBind:
	default:
		return lm, llb.State{}, fmt.Errorf("type=%s: %w", t, errNotSupported)
	}
	// No from= is the build context. Convert linked every from= before lowering
	// (linkCommand): a stage named is lowered by now, an image or named context resolved.
	src, err := c.mountSource(s, m.From)
	if err != nil {
		return lm, llb.State{}, fmt.Errorf("from=%s: %w", m.From, err)
	}
	if p := path.Join("/", m.Source); p != "/" {
		lm.Source = p
	}
	return lm, src, nil
}

// secretMount: the id defaults to source=, then to the target's base name; without
// env= the secret is a file, by default /run/secrets/<id>. Only names go into the
// graph: the content is read at run time and never takes part in a cache key.
func secretMount(m *instructions.Mount, mode, uid, gid *uint32) (llb.Mount, llb.State, error) {
	lm := llb.Mount{Type: llb.MountSecret, Input: llb.NoInput, Required: m.Required}
	lm.SecretID = m.CacheID
	if m.Source != "" {
		lm.SecretID = m.Source
	}
	if lm.SecretID == "" {
		if m.Target == "" {
			return lm, llb.State{}, errors.New("type=secret: one of id, source or target is required")
		}
		lm.SecretID = path.Base(m.Target)
	}
	if m.Target != "" {
		lm.Target = path.Join("/", m.Target)
	}
	if m.Env != nil {
		if *m.Env == "" {
			return lm, llb.State{}, errors.New("env=: the secret's variable name is empty")
		}
		lm.Env = *m.Env
	} else if lm.Target == "" {
		lm.Target = path.Join(secretsDir, path.Base(lm.SecretID))
	}
	if mode != nil || uid != nil || gid != nil {
		lm.Mode, lm.UID, lm.GID = orDefault(mode, 0o400), orDefault(uid, 0), orDefault(gid, 0)
	}
	return lm, llb.State{}, nil
}

// sshMount forwards the build's ssh agent id (default "default"); the socket lands at
// target or /run/buildkit/ssh_agent.N for the Nth ssh mount of the RUN.
func sshMount(m *instructions.Mount, mode, uid, gid *uint32, n *int) (llb.Mount, llb.State, error) {
	lm := llb.Mount{Type: llb.MountSSH, Input: llb.NoInput, Required: m.Required}
	if m.Source != "" {
		return lm, llb.State{}, fmt.Errorf("source=%s: an ssh mount has no source", m.Source)
	}
	if m.From != "" {
		return lm, llb.State{}, fmt.Errorf("from=%s: an ssh mount has no source", m.From)
	}
	lm.SSHID = m.CacheID
	if lm.SSHID == "" {
		lm.SSHID = "default"
	}
	lm.Target = fmt.Sprintf("%s/ssh_agent.%d", sshAgentDir, *n)
	if m.Target != "" {
		lm.Target = path.Join("/", m.Target)
	}
	*n++
	if mode != nil || uid != nil || gid != nil {
		lm.Mode, lm.UID, lm.GID = orDefault(mode, 0o600), orDefault(uid, 0), orDefault(gid, 0)
	}
	return lm, llb.State{}, nil
}

// ptr32 narrows a parsed option; instructions parses them with a 32-bit limit.
func ptr32(v *uint64) *uint32 {
	if v == nil {
		return nil
	}
	n := uint32(*v)
	return &n
}

func orDefault(v *uint32, def uint32) *uint32 {
	if v == nil {
		return &def
	}
	return v
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

// proxyArgs are the build args every stage may use without declaring them; BuildKit
// keeps them out of history and cache keys unless a stage declares them with ARG.
var proxyArgs = []string{
	"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
	"NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
}

// proxyEnv returns the undeclared proxy args given with --build-arg, sorted.
func (c *converter) proxyEnv(s *stage) []string {
	var env []string
	for _, k := range proxyArgs {
		v, ok := c.opt.BuildArgs[k]
		if !ok {
			continue
		}
		if _, declared := lookupEnv(s.env, k); declared {
			continue
		}
		env = append(env, k+"="+v)
	}
	return llb.SortedEnv(env)
}
