package dockerfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/dfgitutil"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/llb"
)

// copySpec is what COPY and ADD share.
type copySpec struct {
	name   string // COPY or ADD
	text   string // the instruction as written, for the description
	params instructions.SourcesAndDest
	chown  string
	chmod  string
	// link (--link) asks BuildKit for a layer independent of the one below, made with
	// a merge op. The files are the same either way, so it is lowered as a plain copy;
	// only its restriction on --chown names is kept.
	link    bool
	parents bool
	exclude []string
	// from is what local paths are copied from: the build context, a stage, an image
	// or a named context.
	from llb.State
	loc  []parser.Range

	// ADD only.
	add        bool
	unpack     *bool
	keepGitDir *bool
	checksum   string
}

func (c *converter) dispatchCopyCommand(s *stage, cp *instructions.CopyCommand) error {
	spec := copySpec{name: "COPY", text: cp.String(), params: cp.SourcesAndDest, chown: cp.Chown, chmod: cp.Chmod,
		link: cp.Link, parents: cp.Parents, exclude: cp.ExcludePatterns, loc: cp.Location()}
	if cp.From == "" {
		spec.from = c.context()
		return c.dispatchCopy(s, spec)
	}
	st, err := c.sourceState(s, c.froms[cp], cp.From, "copies from")
	if err != nil {
		return withWord("--from="+cp.From, err)
	}
	spec.from = st
	if err := c.dispatchCopy(s, spec); err != nil {
		return withWord("--from="+cp.From, err)
	}
	return nil
}

func (c *converter) dispatchAdd(s *stage, a *instructions.AddCommand) error {
	return c.dispatchCopy(s, copySpec{name: "ADD", text: a.String(), params: a.SourcesAndDest, chown: a.Chown, chmod: a.Chmod,
		link: a.Link, exclude: a.ExcludePatterns, from: c.context(), loc: a.Location(),
		add: true, unpack: a.Unpack, keepGitDir: a.KeepGitDir, checksum: a.Checksum})
}

// copyPart is one copy action of a COPY or ADD and the state it reads.
type copyPart struct {
	from   llb.State
	action llb.CopyAction
}

// dispatchCopy lowers COPY and ADD to one file op with a copy action per kind of
// source: local paths (together), each git repository, URL and heredoc.
func (c *converter) dispatchCopy(s *stage, spec copySpec) error {
	srcs, docs := spec.params.SourcePaths, spec.params.SourceContents
	if len(srcs)+len(docs) == 0 {
		return errors.New("no source files")
	}
	dest := spec.params.DestPath
	// BuildKit copies each source to dest in turn: with a trailing "/" they all go into
	// the directory; without one, several sources each land on dest and the last wins
	// (the classic builder refused this). One action per source keeps that rule.
	oneByOne := len(srcs)+len(docs) > 1 && !strings.HasSuffix(dest, "/")
	base := llb.CopyAction{Dest: destPath(workdir(s), dest), Exclude: spec.exclude}
	if spec.chown != "" {
		if spec.link && chownByName(spec.chown) {
			return withWord("--chown="+spec.chown, errors.New("user and group names can't be resolved when used with --link, use numeric uid[:gid] instead"))
		}
		base.Chown = parseChown(spec.chown)
	}
	if spec.chmod != "" {
		mode, err := parseChmod(spec.chmod)
		if err != nil {
			return withWord("--chmod="+spec.chmod, err)
		}
		base.Mode = &mode
	}
	if spec.checksum != "" {
		switch {
		case len(srcs)+len(docs) != 1:
			return withWord("--checksum", errors.New("checksum can't be specified for multiple sources"))
		case len(srcs) == 0 || (!isHTTPSource(srcs[0]) && !isGitSource(srcs[0])):
			return withWord("--checksum", errors.New("checksum requires HTTP(S) or Git sources"))
		}
	}

	env := shell.EnvsFromSlice(s.env)
	desc := s.describe(c.display(spec.text, env))
	meta := c.meta(desc, spec.loc)

	var parts []copyPart
	var local []string
	for _, src := range srcs {
		part, ok, err := c.remoteSource(spec, base, src, meta)
		if err != nil {
			return err
		}
		if ok {
			parts = append(parts, part)
			continue
		}
		local = append(local, src)
	}
	if len(local) > 0 {
		if spec.from.IsScratch() {
			return errors.New("copying from an empty filesystem (scratch): nothing to copy")
		}
		a := base
		a.AllowWildcard, a.FollowSymlinks, a.Parents = true, true, spec.parents
		// ADD unpacks local archives unless --unpack=false; COPY never does.
		a.AutoExtract = spec.add && (spec.unpack == nil || *spec.unpack)
		var mine []copyPart
		for _, p := range local {
			src := cleanSource(p)
			if spec.parents {
				src = parentsSource(p)
			}
			if oneByOne {
				one := a
				one.Src = []string{src}
				mine = append(mine, copyPart{from: spec.from, action: one})
				continue
			}
			a.Src = append(a.Src, src)
		}
		if !oneByOne {
			mine = []copyPart{{from: spec.from, action: a}}
		}
		parts = append(mine, parts...)
	}
	for _, doc := range docs {
		p := cleanSource(doc.Path)
		st, err := llb.Scratch().Mkfile(llb.MkfileAction{Path: "/" + p, Data: []byte(doc.Data), Mode: 0o644},
			c.meta("[internal] preparing inline document", spec.loc))
		if err != nil {
			return err
		}
		a := base
		a.Src = []string{p}
		parts = append(parts, copyPart{from: st, action: a})
	}

	st, err := c.stamp(copyAll(s.state, parts, meta))
	if err != nil {
		return err
	}
	s.state = st

	msg := []string{spec.name}
	if spec.parents {
		msg = append(msg, "--parents")
	}
	if spec.chown != "" {
		msg = append(msg, "--chown="+spec.chown)
	}
	if spec.chmod != "" {
		msg = append(msg, "--chmod="+spec.chmod)
	}
	msg = append(msg, srcs...)
	for _, doc := range docs {
		msg = append(msg, "<<"+doc.Path)
	}
	msg = append(msg, spec.params.DestPath, "# buildkit")
	s.commit(strings.Join(msg, " "), st.Vertex().Digest())
	return nil
}

// remoteSource lowers src when it is a git repository or a URL (ok), with BuildKit's
// rules: only ADD fetches them, a URL's file keeps its name and is not unpacked unless
// --unpack=true, a repository is copied whole (or its subdir).
func (c *converter) remoteSource(spec copySpec, base llb.CopyAction, src string, meta llb.Meta) (copyPart, bool, error) {
	ref, isGit, err := dfgitutil.ParseGitRef(src)
	switch {
	case err != nil && isGit:
		return copyPart{}, false, withWord(src, fmt.Errorf("parsing git URL: %w", err))
	case err == nil && !ref.IndistinguishableFromLocal:
		if !spec.add {
			return copyPart{}, false, withWord(src, errors.New("source can't be a git ref for COPY"))
		}
		st, err := c.gitSource(spec, ref, meta)
		if err != nil {
			return copyPart{}, false, withWord(src, err)
		}
		a := base
		a.Src = []string{"."}
		return copyPart{from: st, action: a}, true, nil
	case isHTTPSource(src):
		if !spec.add {
			return copyPart{}, false, withWord(src, errors.New("source can't be a URL for COPY"))
		}
		// The file is named after the URL's last path element, then copied to dest
		// (renamed when dest is not a directory), as BuildKit does.
		file := "__unnamed__"
		if u, err := url.Parse(src); err == nil {
			if b := path.Base(u.Path); b != "." && b != "/" {
				file = b
			}
		}
		attrs := map[string]string{llb.AttrHTTPFilename: file}
		if spec.checksum != "" {
			d, err := digest.Parse(spec.checksum)
			if err != nil {
				return copyPart{}, false, withWord("--checksum="+spec.checksum, err)
			}
			attrs[llb.AttrHTTPChecksum] = d.String()
		}
		st, err := llb.Source(src, attrs, meta)
		if err != nil {
			return copyPart{}, false, err
		}
		a := base
		a.Src = []string{file}
		// Remote archives are not unpacked unless asked (Docker's reference).
		a.AutoExtract = spec.unpack != nil && *spec.unpack
		return copyPart{from: st, action: a}, true, nil
	}
	return copyPart{}, false, nil
}

// gitSource is the source op of a git repository ADD reads; options come from the URL
// (#ref:subdir, ?ref=&subdir=&keep-git-dir=&checksum=) and the flags, which must agree.
func (c *converter) gitSource(spec copySpec, ref *dfgitutil.GitRef, meta llb.Meta) (llb.State, error) {
	keep := spec.keepGitDir
	if keep != nil && ref.KeepGitDir != nil && *keep != *ref.KeepGitDir {
		return llb.State{}, errors.New("inconsistent keep-git-dir configuration")
	}
	if ref.KeepGitDir != nil {
		keep = ref.KeepGitDir
	}
	checksum := spec.checksum
	if checksum != "" && ref.Checksum != "" && checksum != ref.Checksum {
		return llb.State{}, fmt.Errorf("checksum mismatch %q != %q", checksum, ref.Checksum)
	}
	if ref.Checksum != "" {
		checksum = ref.Checksum
	}
	switch {
	case ref.Submodules != nil && !*ref.Submodules:
		return llb.State{}, fmt.Errorf("submodules=false: %w", errNotSupported)
	case ref.MTime == "commit":
		return llb.State{}, fmt.Errorf("mtime=commit: %w", errNotSupported)
	}
	// fetch-by-commit only changes how the pinned commit is fetched, not the files.
	attrs := map[string]string{}
	if ref.Ref != "" {
		attrs[llb.AttrGitRef] = ref.Ref
	}
	if ref.SubDir != "" {
		attrs[llb.AttrGitSubdir] = ref.SubDir
	}
	if keep != nil && *keep {
		attrs[llb.AttrGitKeepDir] = "true"
	}
	if checksum != "" {
		attrs[llb.AttrGitChecksum] = checksum
	}
	if len(attrs) == 0 {
		attrs = nil
	}
	return llb.Source(llb.GitScheme+ref.Remote, attrs, meta)
}

func isHTTPSource(src string) bool {
	return (strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")) && !isGitSource(src)
}

func isGitSource(src string) bool {
	ref, isGit, _ := dfgitutil.ParseGitRef(src)
	return ref != nil && isGit
}

// copyAll is one file op on base with a copy action per part, in order. Each action
// reads its own input, as llb.State.Copy does, so a single part gives the same vertex.
func copyAll(base llb.State, parts []copyPart, meta llb.Meta) (llb.State, error) {
	if len(parts) == 1 {
		return base.Copy(parts[0].from, parts[0].action, meta)
	}
	op := &llb.FileOp{Base: llb.NoInput}
	var ins []*llb.Vertex
	if !base.IsScratch() {
		ins = append(ins, base.Vertex())
		op.Base = 0
	}
	for _, p := range parts {
		if p.from.IsScratch() {
			return llb.State{}, errors.New("copying from an empty filesystem (scratch): nothing to copy")
		}
		a := p.action
		a.From = len(ins)
		ins = append(ins, p.from.Vertex())
		op.Actions = append(op.Actions, llb.FileAction{Copy: &a})
	}
	v, err := llb.NewVertex(op, ins, meta)
	if err != nil {
		return llb.State{}, err
	}
	return llb.FromVertex(v), nil
}

// parseChmod reads --chmod. BuildKit also takes symbolic modes (u+x), which the copy
// action cannot carry (llb.CopyAction.Mode is numeric).
func parseChmod(s string) (uint32, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err == nil && m <= 0o7777 {
		return uint32(m), nil
	}
	if err == nil || strings.Trim(s, "0123456789") == "" {
		return 0, fmt.Errorf("invalid chmod parameter: '%s'. it should be octal string and between 0 and 07777", s)
	}
	return 0, fmt.Errorf("symbolic modes: %w", errNotSupported)
}

// chownByName reports a --chown naming a user or group instead of a number.
func chownByName(chown string) bool {
	user, group, _ := strings.Cut(chown, ":")
	for _, p := range []string{user, group} {
		if _, err := strconv.ParseUint(p, 10, 32); p != "" && err != nil {
			return true
		}
	}
	return false
}

// context is the build context source, one vertex for the whole build.
func (c *converter) context() llb.State {
	if c.local == nil {
		var attrs map[string]string
		if len(c.opt.ContextExcludes) > 0 {
			// Only set with patterns, so a context without .dockerignore keeps its digest.
			dt, _ := json.Marshal(c.opt.ContextExcludes)
			attrs = map[string]string{llb.AttrLocalExcludes: string(dt)}
		}
		// Source cannot fail: its identifier is never empty.
		st, _ := llb.Source(llb.LocalScheme+c.opt.ContextName, attrs,
			llb.Meta{Description: "[internal] load build context", IgnoreCache: c.opt.NoCache})
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

// parentsSource cleans a COPY --parents source, keeping a "/./" pivot: the part after
// it is the path kept under the destination.
func parentsSource(p string) string {
	parent, rest, ok := strings.Cut(p, "/./")
	if !ok {
		return cleanSource(p)
	}
	parent, rest = cleanSource(parent), cleanSource(rest)
	if parent == "." {
		return rest
	}
	return parent + "/./" + rest
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
