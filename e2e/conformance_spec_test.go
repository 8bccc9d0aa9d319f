//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// confCase is one directory of testdata/conformance: a Dockerfile, an optional
// context/ and a case.txt with the build's options and the expected results. The format
// is described in testdata/conformance/README.md.
type confCase struct {
	name string
	dir  string // absolute

	args       string   // extra CLI args, placeholders not yet substituted
	rebuild    *string  // args of a second build on the same root; checks apply to it
	stdin      string   // a case file fed to stdin (the context then holds no Dockerfile)
	dockerfile string   // where the Dockerfile goes inside the context (default Dockerfile)
	setups     []string // "push DIR REF" or "oci DIR PATH"
	freshRoot  bool
	sshAgent   bool
	env        []string
	chmods     [][2]string // mode, path in the context
	chowns     [][2]string // uid:gid, path in the context
	symlinks   [][2]string // path in the context, target
	tars       [][2]string // archive path in the context, source dir in the case
	dockerSkip string
	expectErr  string // regexp the stderr of a failing build must match ("" = must succeed)
	checks     []confCheck
}

// confCheck is one expectation line.
type confCheck struct {
	line int
	text string
}

// loadCase reads dir/case.txt.
func loadCase(dir string) (*confCase, error) {
	c := &confCase{name: filepath.Base(dir), dir: dir, dockerfile: "Dockerfile"}
	f, err := os.Open(filepath.Join(dir, "case.txt"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, _ := strings.Cut(line, ":")
		val = strings.TrimSpace(val)
		switch key {
		case "args":
			c.args = val
		case "rebuild":
			c.rebuild = &val
		case "stdin":
			c.stdin = val
		case "dockerfile":
			c.dockerfile = val
		case "setup":
			c.setups = append(c.setups, val)
		case "root":
			if val != "fresh" {
				return nil, fmt.Errorf("case.txt:%d: root: want fresh", n)
			}
			c.freshRoot = true
		case "ssh-agent":
			c.sshAgent = true
		case "env":
			c.env = append(c.env, val)
		case "chmod", "chown", "symlink", "tar":
			a, b, ok := strings.Cut(val, " ")
			if !ok {
				return nil, fmt.Errorf("case.txt:%d: %s: want two words", n, key)
			}
			pair := [2]string{strings.TrimSpace(a), strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(b), "-> "))}
			switch key {
			case "chmod":
				c.chmods = append(c.chmods, pair)
			case "chown":
				c.chowns = append(c.chowns, pair)
			case "symlink":
				c.symlinks = append(c.symlinks, pair)
			case "tar":
				c.tars = append(c.tars, pair)
			}
		case "docker":
			reason, ok := strings.CutPrefix(val, "skip")
			if !ok {
				return nil, fmt.Errorf("case.txt:%d: docker: want skip REASON", n)
			}
			c.dockerSkip = strings.TrimSpace(reason)
		case "expect error":
			if _, err := regexp.Compile(val); err != nil {
				return nil, fmt.Errorf("case.txt:%d: %w", n, err)
			}
			c.expectErr = val
		default:
			c.checks = append(c.checks, confCheck{line: n, text: line})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if c.expectErr == "" && len(c.checks) == 0 {
		return nil, errors.New("case.txt has no expectation")
	}
	return c, nil
}

// splitConfWords splits s at blanks; "..." is a Go-quoted string and '...' a literal one,
// both may be part of a word (key="a b").
func splitConfWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == ' ' || ch == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case ch == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case ch == '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' {
					j++
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated \" in %q", s)
			}
			u, err := strconv.Unquote(s[i : j+1])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s[i:j+1], err)
			}
			cur.WriteString(u)
			i = j
			inWord = true
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// confImage is what a build produced, as the checks see it.
type confImage struct {
	rootfs    string         // the image unpacked by umoci
	config    map[string]any // the image config JSON
	rawConfig []byte
	layers    int
	blobs     [][]byte // uncompressed layer tars
	output    string   // stdout and stderr of the build
}

// check evaluates one expectation line against b.
func (b *confImage) check(text string) error {
	first, _, _ := strings.Cut(text, " ")
	switch first {
	case "file", "dir", "symlink", "hardlink", "absent", "exists", "image":
	default:
		return b.checkConfig(text)
	}
	w, err := splitConfWords(text)
	if err != nil {
		return err
	}
	switch w[0] {
	case "file", "dir":
		if len(w) < 2 {
			return fmt.Errorf("%s: want a path", w[0])
		}
		return b.checkPath(w[0], w[1], w[2:])
	case "symlink":
		if len(w) != 4 || w[2] != "->" {
			return errors.New("symlink: want PATH -> TARGET")
		}
		got, err := os.Readlink(b.path(w[1]))
		if err != nil {
			return err
		}
		if got != w[3] {
			return fmt.Errorf("%s -> %s, want -> %s", w[1], got, w[3])
		}
		return nil
	case "hardlink":
		if len(w) != 3 {
			return errors.New("hardlink: want PATH PATH")
		}
		var a, c syscall.Stat_t
		if err := syscall.Lstat(b.path(w[1]), &a); err != nil {
			return fmt.Errorf("%s: %w", w[1], err)
		}
		if err := syscall.Lstat(b.path(w[2]), &c); err != nil {
			return fmt.Errorf("%s: %w", w[2], err)
		}
		if a.Dev != c.Dev || a.Ino != c.Ino {
			return fmt.Errorf("%s and %s are different files (inodes %d, %d)", w[1], w[2], a.Ino, c.Ino)
		}
		return nil
	case "absent", "exists":
		if len(w) != 2 {
			return fmt.Errorf("%s: want one path", w[0])
		}
		_, err := os.Lstat(b.path(w[1]))
		switch {
		case w[0] == "absent" && err == nil:
			return fmt.Errorf("%s exists, want it absent", w[1])
		case w[0] == "absent" && !errors.Is(err, os.ErrNotExist):
			return err
		case w[0] == "exists" && err != nil:
			return err
		}
		return nil
	case "image":
		if len(w) != 3 || (w[1] != "contains" && w[1] != "!contains") {
			return errors.New(`image: want contains|!contains "STRING"`)
		}
		var where []string
		if bytes.Contains(b.rawConfig, []byte(w[2])) {
			where = append(where, "the config")
		}
		for i, l := range b.blobs {
			if bytes.Contains(l, []byte(w[2])) {
				where = append(where, fmt.Sprintf("layer %d", i))
			}
		}
		if w[1] == "contains" && len(where) == 0 {
			return fmt.Errorf("no layer and not the config contains %q", w[2])
		}
		if w[1] == "!contains" && len(where) > 0 {
			return fmt.Errorf("%q is in %s", w[2], strings.Join(where, ", "))
		}
		return nil
	}
	return fmt.Errorf("unknown check %q", w[0])
}

func (b *confImage) path(p string) string { return filepath.Join(b.rootfs, filepath.Clean("/"+p)) }

func (b *confImage) checkPath(kind, p string, attrs []string) error {
	var st syscall.Stat_t
	if err := syscall.Lstat(b.path(p), &st); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	switch ft := st.Mode & syscall.S_IFMT; {
	case kind == "file" && ft != syscall.S_IFREG:
		return fmt.Errorf("%s is not a regular file (mode %o)", p, st.Mode)
	case kind == "dir" && ft != syscall.S_IFDIR:
		return fmt.Errorf("%s is not a directory (mode %o)", p, st.Mode)
	}
	var errs []error
	for _, a := range attrs {
		k, v, ok := strings.Cut(a, "=")
		if re, isRe := strings.CutPrefix(a, "content~"); isRe {
			k, v, ok = "content~", re, true
		}
		if !ok {
			return fmt.Errorf("%s: attribute %q is not key=value", p, a)
		}
		switch k {
		case "mode":
			want, err := strconv.ParseUint(v, 8, 32)
			if err != nil {
				return fmt.Errorf("mode=%s: %w", v, err)
			}
			if got := st.Mode & 0o7777; uint64(got) != want {
				errs = append(errs, fmt.Errorf("%s: mode %04o, want %04o", p, got, want))
			}
		case "uid", "gid":
			want, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return fmt.Errorf("%s=%s: %w", k, v, err)
			}
			got := st.Uid
			if k == "gid" {
				got = st.Gid
			}
			if uint64(got) != want {
				errs = append(errs, fmt.Errorf("%s: %s %d, want %d", p, k, got, want))
			}
		case "size":
			want, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fmt.Errorf("size=%s: %w", v, err)
			}
			if st.Size != want {
				errs = append(errs, fmt.Errorf("%s: size %d, want %d", p, st.Size, want))
			}
		case "content", "content~":
			dt, err := os.ReadFile(b.path(p))
			if err != nil {
				return err
			}
			if k == "content" && string(dt) != v {
				errs = append(errs, fmt.Errorf("%s: content %q, want %q", p, dt, v))
			}
			if k == "content~" {
				rx, err := regexp.Compile(v)
				if err != nil {
					return err
				}
				if !rx.Match(dt) {
					errs = append(errs, fmt.Errorf("%s: content %q does not match %s", p, dt, rx))
				}
			}
		case "entries":
			ents, err := os.ReadDir(b.path(p))
			if err != nil {
				return err
			}
			var got []string
			for _, e := range ents {
				got = append(got, e.Name())
			}
			var want []string
			if v != "" {
				want = strings.Split(v, ",")
			}
			sort.Strings(want)
			if strings.Join(got, ",") != strings.Join(want, ",") {
				errs = append(errs, fmt.Errorf("%s: entries [%s], want [%s]", p, strings.Join(got, ","), strings.Join(want, ",")))
			}
		default:
			return fmt.Errorf("%s: unknown attribute %q", p, k)
		}
	}
	return errors.Join(errs...)
}

var configCheckLine = regexp.MustCompile(`^(\S+)\s+(=|!=|~|contains|!contains)\s*(.*)$`)

// checkConfig evaluates "PATH OP VALUE" on the image config (and the pseudo field
// layers, the number of layers in the manifest).
func (b *confImage) checkConfig(text string) error {
	if re, ok := strings.CutPrefix(text, "output ~"); ok {
		rx, err := regexp.Compile(strings.TrimSpace(re))
		if err != nil {
			return err
		}
		if !rx.MatchString(b.output) {
			return fmt.Errorf("the build output does not match %s", rx)
		}
		return nil
	}
	m := configCheckLine.FindStringSubmatch(text)
	if m == nil {
		return fmt.Errorf("cannot read check %q", text)
	}
	path, op, want := m[1], m[2], strings.TrimSpace(m[3])
	var got any
	if path == "layers" {
		got = float64(b.layers)
	} else {
		var err error
		if got, err = lookupJSON(b.config, path); err != nil {
			return err
		}
	}
	gotJSON, _ := json.Marshal(got)
	switch op {
	case "=", "!=":
		eq, err := equalJSON(got, want)
		if err != nil {
			return err
		}
		if eq != (op == "=") {
			return fmt.Errorf("%s is %s, want %s %s", path, gotJSON, op, want)
		}
	case "~":
		rx, err := regexp.Compile(want)
		if err != nil {
			return err
		}
		s, ok := got.(string)
		if !ok {
			s = string(gotJSON)
		}
		if !rx.MatchString(s) {
			return fmt.Errorf("%s is %s, want a match for %s", path, gotJSON, want)
		}
	case "contains", "!contains":
		has := false
		switch g := got.(type) {
		case []any:
			for _, e := range g {
				if eq, _ := equalJSON(e, want); eq {
					has = true
				}
			}
		case map[string]any:
			_, has = g[unquoteJSON(want)]
		case string:
			has = strings.Contains(g, unquoteJSON(want))
		}
		if has != (op == "contains") {
			return fmt.Errorf("%s is %s, want it to %s %s", path, gotJSON, op, want)
		}
	}
	return nil
}

func unquoteJSON(s string) string {
	var u string
	if strings.HasPrefix(s, `"`) && json.Unmarshal([]byte(s), &u) == nil {
		return u
	}
	return s
}

// equalJSON compares a JSON value with the text of a check: a string value with the
// text itself (or the JSON string it quotes), anything else with the text read as
// JSON. A missing value equals null, false, 0, "", [] and {}, and the other way round.
func equalJSON(got any, want string) (bool, error) {
	if s, ok := got.(string); ok && !strings.HasPrefix(want, `"`) && want != "null" {
		return s == want, nil
	}
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		if got == nil {
			return false, nil
		}
		return false, fmt.Errorf("%q is not JSON", want)
	}
	if isZeroJSON(got) && isZeroJSON(w) {
		return true, nil
	}
	return reflect.DeepEqual(got, w), nil
}

func isZeroJSON(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case bool:
		return !v
	case float64:
		return v == 0
	case string:
		return v == ""
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

var jsonPathSegment = regexp.MustCompile(`^(?:\.?([A-Za-z_][A-Za-z0-9_]*)|\[(-?[0-9]+)\]|\[("(?:[^"\\]|\\.)*")\])`)

// lookupJSON walks path (config.Labels["a.b"], history[-1].created_by, history.count)
// through v. A missing key is nil; count is the length of an array or map.
func lookupJSON(v any, path string) (any, error) {
	rest := path
	for rest != "" {
		m := jsonPathSegment.FindStringSubmatch(rest)
		if m == nil {
			return nil, fmt.Errorf("bad path %q at %q", path, rest)
		}
		rest = rest[len(m[0]):]
		switch {
		case m[2] != "":
			a, ok := v.([]any)
			if !ok {
				return nil, fmt.Errorf("%s: %q is not an array", path, m[0])
			}
			i, _ := strconv.Atoi(m[2])
			if i < 0 {
				i += len(a)
			}
			if i < 0 || i >= len(a) {
				return nil, fmt.Errorf("%s: index %s out of range (%d entries)", path, m[2], len(a))
			}
			v = a[i]
		default:
			key := m[1]
			if m[3] != "" {
				key, _ = strconv.Unquote(m[3])
			}
			switch x := v.(type) {
			case map[string]any:
				if val, ok := x[key]; ok || key != "count" || m[3] != "" {
					v = val
				} else {
					v = float64(len(x))
				}
			case []any:
				if key != "count" {
					return nil, fmt.Errorf("%s: %q on an array", path, key)
				}
				v = float64(len(x))
			case nil:
				if key == "count" {
					v = float64(0)
				}
			default:
				return nil, fmt.Errorf("%s: %q on a %T", path, key, v)
			}
		}
	}
	return v, nil
}

// TestConformanceChecks proves the expectation language: each line must pass or fail
// on a known filesystem and config, so a broken check cannot hide a broken build.
func TestConformanceChecks(t *testing.T) {
	rootfs := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(rootfs, "d/sub"), 0o755))
	must(os.WriteFile(filepath.Join(rootfs, "d/f"), []byte("hi\n"), 0o640))
	must(os.Chown(filepath.Join(rootfs, "d/f"), 1000, 1001))
	must(os.Link(filepath.Join(rootfs, "d/f"), filepath.Join(rootfs, "hl")))
	must(os.Symlink("d/f", filepath.Join(rootfs, "ln")))
	img := &confImage{rootfs: rootfs, layers: 2, output: "#3 DONE 0.1s",
		rawConfig: []byte(`{"author":"a b","config":{"Env":["A=1","B=two words"],"Cmd":["sh","-c","x"],` +
			`"Labels":{"org.x":"y","e":""},"ExposedPorts":{"80/tcp":{}},"Healthcheck":{"Interval":5000000000}},` +
			`"history":[{"created_by":"base"},{"created_by":"RUN |1 A=1 /bin/sh -c x # buildkit","empty_layer":true}]}`),
		blobs: [][]byte{[]byte("layer with .wh.gone")}}
	must(json.Unmarshal(img.rawConfig, &img.config))
	for _, tc := range []struct {
		check string
		ok    bool
	}{
		{`file /d/f mode=0640 uid=1000 gid=1001 size=3 content="hi\n"`, true},
		{`file /d/f content~"^h"`, true},
		{`file /d/f mode=0644`, false},
		{`file /d/f uid=0`, false},
		{`file /d/f content="hi"`, false},
		{`file /d`, false},
		{`dir /d entries=f,sub`, true},
		{`dir /d entries=f`, false},
		{`dir /d/sub entries=`, true},
		{`symlink /ln -> d/f`, true},
		{`symlink /ln -> f`, false},
		{`hardlink /d/f /hl`, true},
		{`hardlink /d/f /ln`, false},
		{`absent /nope`, true},
		{`absent /d`, false},
		{`exists /ln`, true},
		{`image contains ".wh.gone"`, true},
		{`image !contains "B=two words"`, false},
		{`layers = 2`, true},
		{`layers = 3`, false},
		{`output ~ DONE`, true},
		{`output ~ CACHED`, false},
		{`author = a b`, true},
		{`config.Env contains B=two words`, true},
		{`config.Env !contains A=1`, false},
		{`config.Cmd = ["sh","-c","x"]`, true},
		{`config.Cmd = ["sh"]`, false},
		{`config.Labels["org.x"] = y`, true},
		{`config.Labels.e = ""`, true},
		{`config.Labels.count = 2`, true},
		{`config.ExposedPorts = {"80/tcp":{}}`, true},
		{`config.Healthcheck.Interval = 5000000000`, true},
		{`config.User = null`, true},
		{`config.User = root`, false},
		{`config.Volumes = {}`, true},
		{`history.count = 2`, true},
		{`history[-1].created_by = RUN |1 A=1 /bin/sh -c x # buildkit`, true},
		{`history[-1].created_by ~ ^RUN \|1`, true},
		{`history[-1].empty_layer = true`, true},
		{`history[0].empty_layer = false`, true},
		{`history[0].empty_layer = true`, false},
		{`history[5].created_by = x`, false},
	} {
		err := img.check(tc.check)
		if (err == nil) != tc.ok {
			t.Errorf("%s: error %v, want ok=%v", tc.check, err, tc.ok)
		}
	}
}
