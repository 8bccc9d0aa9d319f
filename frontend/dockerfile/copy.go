package dockerfile

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/builderdev/builder/llb"
)

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
