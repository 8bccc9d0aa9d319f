package fscopy

import (
	"context"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/moby/patternmatcher"
)

// matcher is one list of patternmatcher patterns with the literal prefixes of the
// patterns that can flip its verdict below a directory, so that a walk only descends
// where a flip is possible.
type matcher struct {
	pm *patternmatcher.PatternMatcher
	// flippers are the split patterns that can turn the verdict over below a directory:
	// the "!" exceptions of an ignore or exclude list, the patterns of an include list.
	flippers [][]string
}

// newMatcher compiles patterns; nil patterns give a nil matcher, which matches nothing.
// flipOnExclusion picks the patterns that can reverse a match (the "!" ones) rather
// than the ones that can create it.
func newMatcher(patterns []string, flipOnExclusion bool) (*matcher, error) {
	if len(patterns) == 0 {
		return nil, nil
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("compiling patterns %q: %w", patterns, err)
	}
	if len(pm.Patterns()) == 0 {
		return nil, nil
	}
	m := &matcher{pm: pm}
	for _, p := range pm.Patterns() {
		if p.Exclusion() == flipOnExclusion {
			m.flippers = append(m.flippers, strings.Split(p.String(), "/"))
		}
	}
	return m, nil
}

// test matches rel (slash-separated, relative) given the result of its parent.
func (m *matcher) test(rel string, parent patternmatcher.MatchInfo) (bool, patternmatcher.MatchInfo, error) {
	if m == nil {
		return false, patternmatcher.MatchInfo{}, nil
	}
	ok, info, err := m.pm.MatchesUsingParentResults(rel, parent)
	if err != nil {
		return false, info, fmt.Errorf("matching %s: %w", rel, err)
	}
	return ok, info, nil
}

// mayFlipBelow reports whether some path strictly below dir could get the opposite
// verdict from dir's. It compares dir with each flipping pattern's components up to
// the first one holding a wildcard, so it may say yes needlessly but never says no
// wrongly.
func (m *matcher) mayFlipBelow(dir string) bool {
	if m == nil {
		return false
	}
	d := splitRel(dir)
	for _, p := range m.flippers {
		if flipPossible(p, d) {
			return true
		}
	}
	return false
}

func flipPossible(pattern, dir []string) bool {
	for i, comp := range pattern {
		if isPatternMeta(comp) {
			return true // dir agrees with the literal prefix; the rest may match anything
		}
		if i == len(dir) {
			return true // the literal pattern names something below dir
		}
		if comp != dir[i] {
			return false
		}
	}
	return false // the pattern names dir itself or one of its parents
}

// nextNames lists the only child names of dir that can match a flipping pattern, or
// reports all when a pattern has a wildcard at that depth. It lets a --parents copy
// of "a/b/c.txt" stat three names instead of listing the whole source root.
func (m *matcher) nextNames(dir string) (names []string, all bool) {
	d := splitRel(dir)
	for _, p := range m.flippers {
		if !flipPossible(p, d) {
			continue
		}
		if len(p) <= len(d) || slices.ContainsFunc(p[:len(d)+1], isPatternMeta) {
			return nil, true
		}
		comp := p[len(d)]
		if !slices.Contains(names, comp) {
			names = append(names, comp)
		}
	}
	slices.Sort(names)
	return names, false
}

// isPatternMeta reports whether a pattern component is anything but a plain name
// (escapes included, to stay on the safe side).
func isPatternMeta(comp string) bool {
	return strings.ContainsAny(comp, `*?[\`)
}

func splitRel(rel string) []string {
	if rel == "" || rel == "." {
		return nil
	}
	return strings.Split(rel, "/")
}

// selector decides which entries a walk copies or hashes. Ignore patterns
// (.dockerignore) see paths relative to the source root; include (--parents) and
// exclude (--exclude) patterns see paths relative to the source being copied.
type selector struct {
	ignore  *matcher
	include *matcher
	exclude *matcher
}

func newSelector(ignore, include, exclude []string) (*selector, error) {
	var s selector
	var err error
	if s.ignore, err = newMatcher(ignore, true); err != nil {
		return nil, fmt.Errorf("reading ignore patterns: %w", err)
	}
	if s.include, err = newMatcher(include, false); err != nil {
		return nil, fmt.Errorf("reading source patterns: %w", err)
	}
	if s.exclude, err = newMatcher(exclude, true); err != nil {
		return nil, fmt.Errorf("reading --exclude patterns: %w", err)
	}
	return &s, nil
}

// pos is an entry's place for the selector: its paths and its match results, which its
// children build on.
type pos struct {
	rootRel string // relative to the source root, "" for the root
	srcRel  string // relative to the copied source, "" for the source itself
	ign     patternmatcher.MatchInfo
	inc     patternmatcher.MatchInfo
	exc     patternmatcher.MatchInfo
	// included: the include patterns matched this entry or a parent, so the walk no
	// longer needs to look for matches below it.
	included bool
}

// sourcePos places a source found at rootRel inside the source root.
func (s *selector) sourcePos(rootRel string) (pos, error) {
	p := pos{rootRel: rootRel, included: s.include == nil}
	if rootRel != "" {
		var err error
		if _, p.ign, err = s.ignore.test(rootRel, patternmatcher.MatchInfo{}); err != nil {
			return pos{}, err
		}
	}
	return p, nil
}

// child judges the entry name inside the directory at parent. selected entries are
// copied; explore says a directory that is not selected itself may hold selected
// entries, and is created only when one is found.
func (s *selector) child(parent pos, name string, isDir bool) (p pos, selected, explore bool, err error) {
	p = pos{rootRel: path.Join(parent.rootRel, name), srcRel: path.Join(parent.srcRel, name), included: parent.included}
	ignored, excluded := false, false
	if ignored, p.ign, err = s.ignore.test(p.rootRel, parent.ign); err != nil {
		return p, false, false, err
	}
	if !p.included {
		if p.included, p.inc, err = s.include.test(p.srcRel, parent.inc); err != nil {
			return p, false, false, err
		}
	}
	if excluded, p.exc, err = s.exclude.test(p.srcRel, parent.exc); err != nil {
		return p, false, false, err
	}
	selected = !ignored && p.included && !excluded
	if selected || !isDir {
		return p, selected, selected && isDir, nil
	}
	explore = (!ignored || s.ignore.mayFlipBelow(p.rootRel)) &&
		(p.included || s.include.mayFlipBelow(p.srcRel)) &&
		(!excluded || s.exclude.mayFlipBelow(p.srcRel))
	return p, false, explore, nil
}

// children lists the names of the directory abs that the walk has to look at.
func (s *selector) children(abs string, at pos) ([]os.DirEntry, error) {
	if !at.included && s.include != nil {
		if names, all := s.include.nextNames(at.srcRel); !all {
			var out []os.DirEntry
			for _, n := range names {
				fi, err := os.Lstat(abs + "/" + n)
				if isNotExist(err) {
					continue
				}
				if err != nil {
					return nil, err
				}
				out = append(out, dirEntry{fi})
			}
			return out, nil
		}
	}
	return os.ReadDir(abs)
}

type dirEntry struct{ fi os.FileInfo }

func (d dirEntry) Name() string               { return d.fi.Name() }
func (d dirEntry) IsDir() bool                { return d.fi.IsDir() }
func (d dirEntry) Type() os.FileMode          { return d.fi.Mode().Type() }
func (d dirEntry) Info() (os.FileInfo, error) { return d.fi, nil }

// visible reports whether the entry at rootRel exists once ignore patterns apply: it
// is not ignored, or it is a directory holding an entry that is not (docker's context
// keeps such directories, with only those entries).
func (s *selector) visible(ctx context.Context, abs, rootRel string, isDir bool) (bool, error) {
	if s.ignore == nil || rootRel == "" {
		return true, nil
	}
	ignored, info, err := s.ignore.test(rootRel, patternmatcher.MatchInfo{})
	if err != nil || !ignored {
		return !ignored, err
	}
	if !isDir {
		return false, nil
	}
	return s.visibleBelow(ctx, abs, rootRel, info)
}

func (s *selector) visibleBelow(ctx context.Context, abs, rootRel string, info patternmatcher.MatchInfo) (bool, error) {
	if !s.ignore.mayFlipBelow(rootRel) {
		return false, nil
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		rel := path.Join(rootRel, e.Name())
		ignored, cinfo, err := s.ignore.test(rel, info)
		if err != nil {
			return false, err
		}
		if !ignored {
			return true, nil
		}
		if e.IsDir() {
			if ok, err := s.visibleBelow(ctx, abs+"/"+e.Name(), rel, cinfo); ok || err != nil {
				return ok, err
			}
		}
	}
	return false, nil
}

// visitor receives the selected entries of a walk, parents before children.
type visitor interface {
	// enter is called for each entry; for a directory before its children.
	enter(abs, rel string, fi os.FileInfo) error
	// leave is called after the children of each directory enter saw.
	leave(abs, rel string, fi os.FileInfo) error
}

// walker walks one source in name order, without following symlinks. A directory that
// is not selected but holds selected entries (an ignored directory with a "!"
// exception, a parent of a --parents match) is entered just before its first selected
// entry, so that it exists exactly when something in it does.
type walker struct {
	sel     *selector
	v       visitor
	pending []pendingDir
}

type pendingDir struct {
	abs, rel string
	fi       os.FileInfo
	entered  bool
}

// walkSource visits a source: the source itself ("."), always, then what is selected below.
func (w *walker) walkSource(ctx context.Context, abs string, fi os.FileInfo, at pos) error {
	return w.walk(ctx, abs, ".", fi, at, true)
}

func (w *walker) walk(ctx context.Context, abs, rel string, fi os.FileInfo, at pos, selected bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if selected {
		for i := range w.pending {
			if !w.pending[i].entered {
				if err := w.v.enter(w.pending[i].abs, w.pending[i].rel, w.pending[i].fi); err != nil {
					return err
				}
				w.pending[i].entered = true
			}
		}
		if err := w.v.enter(abs, rel, fi); err != nil {
			return err
		}
		if !fi.IsDir() {
			return nil
		}
		if err := w.walkChildren(ctx, abs, rel, at); err != nil {
			return err
		}
		return w.v.leave(abs, rel, fi)
	}
	w.pending = append(w.pending, pendingDir{abs: abs, rel: rel, fi: fi})
	err := w.walkChildren(ctx, abs, rel, at)
	last := w.pending[len(w.pending)-1]
	w.pending = w.pending[:len(w.pending)-1]
	if err != nil || !last.entered {
		return err
	}
	return w.v.leave(abs, rel, fi)
}

func (w *walker) walkChildren(ctx context.Context, abs, rel string, at pos) error {
	entries, err := w.sel.children(abs, at)
	if err != nil {
		return err
	}
	for _, e := range entries {
		cp, selected, explore, err := w.sel.child(at, e.Name(), e.IsDir())
		if err != nil {
			return err
		}
		if !selected && !explore {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if err := w.walk(ctx, abs+"/"+e.Name(), path.Join(rel, e.Name()), fi, cp, selected); err != nil {
			return err
		}
	}
	return nil
}
