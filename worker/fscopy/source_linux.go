package fscopy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
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

// expandSources turns the Dockerfile's source list into entries of root, in order,
// expanding wildcards (matches sorted by name).
func expandSources(root string, srcs []string, wildcard, follow bool, name string) ([]source, error) {
	var out []source
	for _, s := range srcs {
		rel := inRoot(s)
		rels := []string{rel}
		if wildcard && hasWildcard(rel) {
			m, err := glob(root, rel)
			if err != nil {
				return nil, fmt.Errorf("matching %q: %w", s, err)
			}
			if len(m) == 0 {
				return nil, &NotFoundError{Path: s, Source: name}
			}
			rels = m
		}
		for _, r := range rels {
			p, err := resolveEntry(root, r, follow)
			if err != nil && !isNotExist(err) {
				return nil, fmt.Errorf("resolving %q: %w", s, err)
			}
			var fi os.FileInfo
			if err == nil {
				fi, err = os.Lstat(p)
			}
			if isNotExist(err) {
				return nil, &NotFoundError{Path: s, Source: name}
			}
			if err != nil {
				return nil, fmt.Errorf("reading %q: %w", s, err)
			}
			out = append(out, source{rel: r, path: p, info: fi})
		}
	}
	return out, nil
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
