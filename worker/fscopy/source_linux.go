package fscopy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// source is one selected entry of the source root after wildcard expansion.
type source struct {
	// rel is the cleaned, unresolved path inside the root ("/a/b"); its base names the
	// entry when it is copied into a directory.
	rel string
	// path is where the entry lives on the host, resolved inside the root.
	path string
	info os.FileInfo
	// sel picks what is copied below the source and at is the source's place for it.
	sel *selector
	at  pos
	// pattern is the --parents pattern below rel; contents reports a --parents source,
	// a directory whose selected contents always go into Dest.
	pattern  string
	contents bool
}

// cleanRoot makes a root absolute and free of symlinks, as securejoin requires.
func cleanRoot(root string) (string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// inRoot cleans a path from the Dockerfile into an absolute path inside a root: ".."
// cannot climb above "/", as in Docker, where the context is the root.
func inRoot(p string) string {
	return filepath.Join("/", p)
}

// resolveEntry resolves rel inside root without following its last component, unless
// follow is set; the directories above it are always followed (inside root).
func resolveEntry(root, rel string, follow bool) (string, error) {
	if rel == "/" {
		return root, nil
	}
	if follow {
		return securejoin.SecureJoin(root, rel)
	}
	parent, err := securejoin.SecureJoin(root, filepath.Dir(rel))
	if err != nil {
		return "", err
	}
	return filepath.Join(parent, filepath.Base(rel)), nil
}

func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// expandOptions are the choices of CopyOptions and ChecksumOptions that pick sources.
type expandOptions struct {
	src      []string
	wildcard bool
	follow   bool
	parents  bool
	name     string
	ignore   []string
	exclude  []string
}

// expandSources turns the Dockerfile's source list into entries of root, in order,
// expanding wildcards (matches sorted by name). Ignored entries do not exist for it: a
// source naming only ignored paths is a NotFoundError.
func expandSources(ctx context.Context, root string, o expandOptions) ([]source, error) {
	base, err := newSelector(o.ignore, nil, o.exclude)
	if err != nil {
		return nil, err
	}
	var out []source
	for _, s := range o.src {
		if o.parents {
			srcs, err := expandParents(ctx, root, s, base, o)
			if err != nil {
				return nil, err
			}
			out = append(out, srcs...)
			continue
		}
		rel := inRoot(s)
		if !o.wildcard || !hasWildcard(rel) {
			src, ok, err := lookup(ctx, root, rel, o.follow, base)
			if err != nil {
				return nil, fmt.Errorf("resolving %q: %w", s, err)
			}
			if !ok {
				return nil, &NotFoundError{Path: s, Source: o.name}
			}
			out = append(out, src)
			continue
		}
		m, err := glob(root, rel)
		if err != nil {
			return nil, fmt.Errorf("matching %q: %w", s, err)
		}
		n := len(out)
		for _, r := range m {
			src, ok, err := lookup(ctx, root, r, o.follow, base)
			if err != nil {
				return nil, fmt.Errorf("resolving %q: %w", s, err)
			}
			if ok {
				out = append(out, src)
			}
		}
		if len(out) == n {
			return nil, &NotFoundError{Path: s, Source: o.name}
		}
	}
	return out, nil
}

// expandParents expands one --parents source as BuildKit does: the part before the
// first "/./" (the whole root without one) is the directory copied, with wildcards
// expanded, and the rest is an include pattern below it, so that matches keep their
// path from there. A source without wildcards must exist; one with wildcards may match
// nothing.
func expandParents(ctx context.Context, root, s string, base *selector, o expandOptions) ([]source, error) {
	dir, pattern, ok := strings.Cut(s, "/./")
	if !ok {
		dir, pattern = "/", s
	}
	dir = inRoot(dir)
	pattern = strings.TrimPrefix(inRoot(pattern), "/")
	sel := *base
	if pattern != "" {
		var err error
		if sel.include, err = newMatcher([]string{pattern}, false); err != nil {
			return nil, fmt.Errorf("reading %q: %w", s, err)
		}
	}
	dirs := []string{dir}
	wild := o.wildcard && (hasWildcard(dir) || hasWildcard(pattern))
	if o.wildcard && hasWildcard(dir) {
		m, err := glob(root, dir)
		if err != nil {
			return nil, fmt.Errorf("matching %q: %w", s, err)
		}
		dirs = m
	} else if !wild {
		_, ok, err := lookup(ctx, root, path.Join(dir, pattern), o.follow, base)
		if err != nil {
			return nil, fmt.Errorf("resolving %q: %w", s, err)
		}
		if !ok {
			return nil, &NotFoundError{Path: s, Source: o.name}
		}
	}
	var out []source
	for _, d := range dirs {
		src, ok, err := lookup(ctx, root, d, true, &sel)
		if err != nil {
			return nil, fmt.Errorf("resolving %q: %w", s, err)
		}
		if !ok || !src.info.IsDir() {
			continue
		}
		src.pattern, src.contents = pattern, true
		out = append(out, src)
	}
	return out, nil
}

// lookup finds rel (cleaned, absolute inside root) as the ignore patterns of sel let it
// be seen: the entry must be visible, and so must every symlink the path goes through,
// since an ignored symlink is not in the context to be followed.
func lookup(ctx context.Context, root, rel string, follow bool, sel *selector) (source, bool, error) {
	p, err := resolveEntry(root, rel, follow)
	if isNotExist(err) {
		return source{}, false, nil
	}
	if err != nil {
		return source{}, false, err
	}
	fi, err := os.Lstat(p)
	if isNotExist(err) {
		return source{}, false, nil
	}
	if err != nil {
		return source{}, false, err
	}
	if sel.ignore != nil {
		parts := splitRel(strings.TrimPrefix(rel, "/"))
		for i := range parts {
			if i == len(parts)-1 && !follow {
				break
			}
			q, err := resolveEntry(root, "/"+strings.Join(parts[:i+1], "/"), false)
			if err != nil {
				return source{}, false, err
			}
			qfi, err := os.Lstat(q)
			if err != nil || qfi.Mode()&os.ModeSymlink == 0 {
				continue
			}
			if ok, err := sel.visible(ctx, q, rootRel(root, q), false); err != nil || !ok {
				return source{}, false, err
			}
		}
	}
	rr := rootRel(root, p)
	if ok, err := sel.visible(ctx, p, rr, fi.IsDir()); err != nil || !ok {
		return source{}, false, err
	}
	at, err := sel.sourcePos(rr)
	if err != nil {
		return source{}, false, err
	}
	return source{rel: rel, path: p, info: fi, sel: sel, at: at}, true, nil
}

// rootRel is p's path relative to root as patterns see it: slash-separated, "" for
// the root itself.
func rootRel(root, p string) string {
	r, err := filepath.Rel(root, p)
	if err != nil || r == "." {
		return ""
	}
	return filepath.ToSlash(r)
}

// hasWildcard reports whether p holds an unescaped filepath.Match metacharacter.
func hasWildcard(p string) bool {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			i++
		case '*', '?', '[':
			return true
		}
	}
	return false
}

// glob expands rel (cleaned, absolute inside root) component by component, so that
// "*.txt" lists one directory instead of walking the whole context. Directories above
// the first wildcard are followed inside root; matched intermediate components must be
// real directories (symlinks are not descended, as filepath.Walk would not).
func glob(root, rel string) ([]string, error) {
	parts := strings.Split(strings.TrimPrefix(rel, "/"), "/")
	i := 0
	for i < len(parts) && !hasWildcard(parts[i]) {
		i++
	}
	base := "/" + strings.Join(parts[:i], "/")
	dir, err := securejoin.SecureJoin(root, base)
	if err != nil {
		if isNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	type cand struct{ rel, path string }
	cur := []cand{{rel: base, path: dir}}
	for j, pat := range parts[i:] {
		last := j == len(parts[i:])-1
		var next []cand
		for _, c := range cur {
			entries, err := os.ReadDir(c.path)
			if isNotExist(err) {
				continue
			}
			if err != nil {
				return nil, err
			}
			for _, e := range entries {
				ok, err := filepath.Match(pat, e.Name())
				if err != nil {
					return nil, err
				}
				if !ok || (!last && !e.IsDir()) {
					continue
				}
				next = append(next, cand{rel: filepath.Join(c.rel, e.Name()), path: filepath.Join(c.path, e.Name())})
			}
		}
		cur = next
	}
	out := make([]string, len(cur))
	for k, c := range cur {
		out[k] = c.rel
	}
	return out, nil
}
