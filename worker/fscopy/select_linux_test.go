package fscopy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/builderdev/builder/internal/testutil"
)

// readIgnore parses a .dockerignore as the CLI does.
func readIgnore(t *testing.T, text string) []string {
	t.Helper()
	p, err := ignorefile.ReadAll(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// filterTree is the context the filter tests copy from.
var filterTree = []node{
	file("a.txt", 0o644, "A"),
	file("b.log", 0o644, "B"),
	dir("docs", 0o755),
	file("docs/readme.md", 0o644, "R"),
	file("docs/notes.txt", 0o644, "N"),
	dir("docs/img", 0o700),
	file("docs/img/x.png", 0o644, "X"),
	dir("src", 0o750),
	dir("src/pkg", 0o711),
	file("src/pkg/a.go", 0o644, "package a"),
	file("src/pkg/a_test.go", 0o644, "package a_test"),
	dir("src/pkg/sub", 0o755),
	file("src/pkg/sub/b.go", 0o644, "package sub"),
	file("src/main.go", 0o644, "package main"),
	dir("node_modules", 0o755),
	dir("node_modules/dep", 0o755),
	file("node_modules/dep/index.js", 0o644, "js"),
	file("node_modules/keep.js", 0o644, "keep"),
	link("ln", "src"),
}

func TestCopyFilters(t *testing.T) {
	testutil.RequiresRoot(t) // copies are owned 0:0
	tests := []struct {
		name     string
		ignore   string // .dockerignore text
		opt      CopyOptions
		want     map[string]string
		notFound bool
	}{{
		name:   "ignore hides files and directories",
		ignore: "*.log\nnode_modules\n",
		opt:    CopyOptions{Src: []string{"."}, Dest: "/out/"},
		want: map[string]string{
			"out": "d 0755 0:0", "out/a.txt": "f 0644 0:0 A", "out/ln": "l 0:0 -> src",
			"out/docs": "d 0755 0:0", "out/docs/readme.md": "f 0644 0:0 R", "out/docs/notes.txt": "f 0644 0:0 N",
			"out/docs/img": "d 0700 0:0", "out/docs/img/x.png": "f 0644 0:0 X",
			"out/src": "d 0750 0:0", "out/src/main.go": "f 0644 0:0 package main",
			"out/src/pkg": "d 0711 0:0", "out/src/pkg/a.go": "f 0644 0:0 package a",
			"out/src/pkg/a_test.go": "f 0644 0:0 package a_test",
			"out/src/pkg/sub":       "d 0755 0:0", "out/src/pkg/sub/b.go": "f 0644 0:0 package sub",
		},
	}, {
		name:   "exception re-includes a file in an ignored directory",
		ignore: "node_modules\n!node_modules/keep.js\n",
		opt:    CopyOptions{Src: []string{"node_modules"}, Dest: "/nm/"},
		want:   map[string]string{"nm": "d 0755 0:0", "nm/keep.js": "f 0644 0:0 keep"},
	}, {
		name:   "ignored directory with an exception is walked from the root",
		ignore: "*\n!src/pkg/sub\n",
		opt:    CopyOptions{Src: []string{"."}, Dest: "/out/"},
		want: map[string]string{
			"out": "d 0755 0:0", "out/src": "d 0750 0:0", "out/src/pkg": "d 0711 0:0",
			"out/src/pkg/sub": "d 0755 0:0", "out/src/pkg/sub/b.go": "f 0644 0:0 package sub",
		},
	}, {
		name:   "double star",
		ignore: "**/*_test.go\n**/img\n",
		opt:    CopyOptions{Src: []string{"src/pkg", "docs"}, Dest: "/out/"},
		want: map[string]string{
			"out": "d 0711 0:0", "out/a.go": "f 0644 0:0 package a",
			"out/sub": "d 0755 0:0", "out/sub/b.go": "f 0644 0:0 package sub",
			"out/readme.md": "f 0644 0:0 R", "out/notes.txt": "f 0644 0:0 N",
		},
	}, {
		name:   "wildcard never matches ignored entries",
		ignore: "b.log\n",
		opt:    CopyOptions{Src: []string{"*.*"}, Dest: "/out/", AllowWildcard: true},
		want:   map[string]string{"out": "d 0755 0:0", "out/a.txt": "f 0644 0:0 A"},
	}, {
		name:     "source naming an ignored file",
		ignore:   "docs/readme.md\n",
		opt:      CopyOptions{Src: []string{"docs/readme.md"}, Dest: "/out/"},
		notFound: true,
	}, {
		name:     "source inside an ignored directory",
		ignore:   "docs\n",
		opt:      CopyOptions{Src: []string{"docs/img/x.png"}, Dest: "/out/"},
		notFound: true,
	}, {
		name:     "wildcard matching only ignored entries",
		ignore:   "*.log\n",
		opt:      CopyOptions{Src: []string{"*.log"}, Dest: "/out/", AllowWildcard: true},
		notFound: true,
	}, {
		name:     "ignored directory whose exception matches nothing",
		ignore:   "docs\n!docs/missing\n",
		opt:      CopyOptions{Src: []string{"docs"}, Dest: "/out/"},
		notFound: true,
	}, {
		name:     "ignored symlink is not followed",
		ignore:   "ln\n",
		opt:      CopyOptions{Src: []string{"ln/main.go"}, Dest: "/out/", FollowSymlinks: true},
		notFound: true,
	}, {
		name: "exclude is relative to the source",
		opt:  CopyOptions{Src: []string{"src"}, Dest: "/out/", Exclude: []string{"*.go"}},
		want: map[string]string{
			"out": "d 0750 0:0", "out/pkg": "d 0711 0:0", "out/pkg/a.go": "f 0644 0:0 package a",
			"out/pkg/a_test.go": "f 0644 0:0 package a_test",
			"out/pkg/sub":       "d 0755 0:0", "out/pkg/sub/b.go": "f 0644 0:0 package sub",
		},
	}, {
		name: "exclude with double star and exception",
		opt:  CopyOptions{Src: []string{"src"}, Dest: "/out/", Exclude: []string{"**/*.go", "!**/b.go"}},
		want: map[string]string{
			"out": "d 0750 0:0", "out/pkg": "d 0711 0:0",
			"out/pkg/sub": "d 0755 0:0", "out/pkg/sub/b.go": "f 0644 0:0 package sub",
		},
	}, {
		name: "excluded directory with an exception keeps only that entry",
		opt:  CopyOptions{Src: []string{"."}, Dest: "/out/", Exclude: []string{"src", "docs", "node_modules", "!src/pkg/a.go", "*.*", "ln"}},
		want: map[string]string{
			"out": "d 0755 0:0", "out/src": "d 0750 0:0", "out/src/pkg": "d 0711 0:0",
			"out/src/pkg/a.go": "f 0644 0:0 package a",
		},
	}, {
		name: "exclude applies below each wildcard match, never to the match",
		opt: CopyOptions{Src: []string{"do*s"}, Dest: "/out/", AllowWildcard: true,
			Exclude: []string{"*.md", "img", "*s"}},
		want: map[string]string{"out": "d 0755 0:0", "out/notes.txt": "f 0644 0:0 N"},
	}, {
		name: "exclude of everything leaves an empty destination",
		opt:  CopyOptions{Src: []string{"docs"}, Dest: "/out", Exclude: []string{"*"}},
		want: map[string]string{"out": "d 0755 0:0"},
	}, {
		name: "parents keep the path",
		opt:  CopyOptions{Src: []string{"src/pkg/a.go", "docs/img/x.png"}, Dest: "/out/", Parents: true},
		want: map[string]string{
			"out": "d 0755 0:0", "out/src": "d 0750 0:0", "out/src/pkg": "d 0711 0:0",
			"out/src/pkg/a.go": "f 0644 0:0 package a",
			"out/docs":         "d 0755 0:0", "out/docs/img": "d 0700 0:0", "out/docs/img/x.png": "f 0644 0:0 X",
		},
	}, {
		name: "parents with wildcards",
		opt:  CopyOptions{Src: []string{"src/*/*.go"}, Dest: "/out/", Parents: true, AllowWildcard: true},
		want: map[string]string{
			"out": "d 0755 0:0", "out/src": "d 0750 0:0", "out/src/pkg": "d 0711 0:0",
			"out/src/pkg/a.go": "f 0644 0:0 package a", "out/src/pkg/a_test.go": "f 0644 0:0 package a_test",
		},
	}, {
		name: "parents with a pivot",
		opt:  CopyOptions{Src: []string{"./src/./pkg/a.go", "src/./pkg/sub"}, Dest: "/out", Parents: true},
		want: map[string]string{
			"out": "d 0755 0:0", "out/pkg": "d 0711 0:0", "out/pkg/a.go": "f 0644 0:0 package a",
			"out/pkg/sub": "d 0755 0:0", "out/pkg/sub/b.go": "f 0644 0:0 package sub",
		},
	}, {
		name: "parents with a wildcard before the pivot and double star after",
		opt:  CopyOptions{Src: []string{"s*/./**/b.go"}, Dest: "/out/", Parents: true, AllowWildcard: true},
		want: map[string]string{
			"out": "d 0755 0:0", "out/pkg": "d 0711 0:0", "out/pkg/sub": "d 0755 0:0",
			"out/pkg/sub/b.go": "f 0644 0:0 package sub",
		},
	}, {
		name:   "parents with exclude and ignore",
		ignore: "**/sub\n",
		opt:    CopyOptions{Src: []string{"src"}, Dest: "/out/", Parents: true, Exclude: []string{"src/*.go"}},
		want: map[string]string{
			"out": "d 0755 0:0", "out/src": "d 0750 0:0", "out/src/pkg": "d 0711 0:0",
			"out/src/pkg/a.go": "f 0644 0:0 package a", "out/src/pkg/a_test.go": "f 0644 0:0 package a_test",
		},
	}, {
		name: "parents wildcard matching nothing is not an error",
		opt:  CopyOptions{Src: []string{"src/*.rs"}, Dest: "/out/", Parents: true, AllowWildcard: true},
		want: map[string]string{"out": "d 0755 0:0"},
	}, {
		name:     "parents missing path",
		opt:      CopyOptions{Src: []string{"src/nope.go"}, Dest: "/out/", Parents: true},
		notFound: true,
	}, {
		name:     "parents of an ignored path",
		ignore:   "src/main.go\n",
		opt:      CopyOptions{Src: []string{"src/main.go"}, Dest: "/out/", Parents: true},
		notFound: true,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src, dst := t.TempDir(), t.TempDir()
			build(t, src, dir(".", 0o755))
			build(t, src, filterTree...)
			build(t, dst, dir(".", 0o755))
			opt := tc.opt
			opt.Ignore = readIgnore(t, tc.ignore)
			err := Copy(t.Context(), src, dst, opt)
			if tc.notFound {
				var nf *NotFoundError
				if !errors.As(err, &nf) {
					t.Fatalf("Copy() = %v, want a *NotFoundError", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Copy() = %v", err)
			}
			if diff := cmp.Diff(tc.want, describe(t, dst)); diff != "" {
				t.Errorf("destination tree (-want +got):\n%s", diff)
			}
		})
	}
}

func TestChecksumFilters(t *testing.T) {
	write := func(p, data string) func(t *testing.T, root string) {
		return func(t *testing.T, root string) {
			t.Helper()
			p := filepath.Join(root, p)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name     string
		opt      ChecksumOptions
		mutate   func(t *testing.T, root string)
		wantSame bool
	}{
		{name: "ignored file changed", opt: ChecksumOptions{Src: []string{"."}, Ignore: []string{"*.log"}},
			mutate: write("b.log", "changed"), wantSame: true},
		{name: "ignored file added", opt: ChecksumOptions{Src: []string{"."}, Ignore: []string{"**/*.tmp"}},
			mutate: write("src/pkg/new.tmp", "x"), wantSame: true},
		{name: "ignored directory changed", opt: ChecksumOptions{Src: []string{"."}, Ignore: []string{"node_modules", "!node_modules/keep.js"}},
			mutate: write("node_modules/dep/index.js", "changed"), wantSame: true},
		{name: "re-included file changed", opt: ChecksumOptions{Src: []string{"."}, Ignore: []string{"node_modules", "!node_modules/keep.js"}},
			mutate: write("node_modules/keep.js", "changed")},
		{name: "included file changed", opt: ChecksumOptions{Src: []string{"."}, Ignore: []string{"*.log"}},
			mutate: write("a.txt", "changed")},
		{name: "excluded file changed", opt: ChecksumOptions{Src: []string{"src"}, Exclude: []string{"**/*_test.go"}},
			mutate: write("src/pkg/a_test.go", "changed"), wantSame: true},
		{name: "file next to excluded changed", opt: ChecksumOptions{Src: []string{"src"}, Exclude: []string{"**/*_test.go"}},
			mutate: write("src/pkg/a.go", "changed")},
		{name: "wildcard match ignored", opt: ChecksumOptions{Src: []string{"*.*"}, AllowWildcard: true, Ignore: []string{"*.log"}},
			mutate: write("c.log", "new"), wantSame: true},
		{name: "wildcard match added", opt: ChecksumOptions{Src: []string{"*.*"}, AllowWildcard: true, Ignore: []string{"*.log"}},
			mutate: write("c.txt", "new")},
		{name: "parents: unmatched sibling changed", opt: ChecksumOptions{Src: []string{"src/pkg/a.go"}, Parents: true},
			mutate: write("src/main.go", "changed"), wantSame: true},
		{name: "parents: matched file changed", opt: ChecksumOptions{Src: []string{"src/pkg/a.go"}, Parents: true},
			mutate: write("src/pkg/a.go", "changed")},
		{name: "parents: parent dir mode changed", opt: ChecksumOptions{Src: []string{"src/pkg/a.go"}, Parents: true},
			mutate: func(t *testing.T, root string) {
				if err := os.Chmod(filepath.Join(root, "src/pkg"), 0o700); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r1, r2 := t.TempDir(), t.TempDir()
			for _, r := range []string{r1, r2} {
				build(t, r, dir(".", 0o755))
				build(t, r, filterTree...)
			}
			tc.mutate(t, r2)
			var h Hasher
			d1, err := h.Checksum(t.Context(), r1, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			d2, err := h.Checksum(t.Context(), r2, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			if (d1 == d2) != tc.wantSame {
				t.Errorf("checksums %s and %s: same = %v, want %v", d1, d2, d1 == d2, tc.wantSame)
			}
		})
	}
}

// TestChecksumFiltersDiffer checks that the layout --parents and --exclude produce is
// part of the sum, not only the bytes read.
func TestChecksumFiltersDiffer(t *testing.T) {
	root := t.TempDir()
	build(t, root, filterTree...)
	var h Hasher
	sums := map[string]string{}
	for name, opt := range map[string]ChecksumOptions{
		"plain":   {Src: []string{"src/pkg/a.go"}},
		"parents": {Src: []string{"src/pkg/a.go"}, Parents: true},
		"pivot":   {Src: []string{"src/./pkg/a.go"}, Parents: true},
		"dir":     {Src: []string{"src"}},
		"exclude": {Src: []string{"src"}, Exclude: []string{"main.go"}},
	} {
		d, err := h.Checksum(t.Context(), root, opt)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if other, ok := sums[d.String()]; ok {
			t.Errorf("%s and %s have the same checksum", name, other)
		}
		sums[d.String()] = name
	}
	if sums[""] != "" {
		t.Error("empty checksum")
	}
}

func TestMatcherWalkPruning(t *testing.T) {
	m, err := newMatcher([]string{"src/pkg/a.go", "docs/*/x.png", "!never"}, false)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		dir       string
		mayFlip   bool
		wantNames []string
		wantAll   bool
	}{
		{dir: "", mayFlip: true, wantNames: []string{"docs", "src"}},
		{dir: "src", mayFlip: true, wantNames: []string{"pkg"}},
		{dir: "src/pkg", mayFlip: true, wantNames: []string{"a.go"}},
		{dir: "src/pkg/a.go", mayFlip: false},
		{dir: "src/other", mayFlip: false},
		{dir: "docs", mayFlip: true, wantAll: true},
		{dir: "docs/img", mayFlip: true, wantAll: true},
		{dir: "node_modules", mayFlip: false},
	}
	for _, tc := range tests {
		if got := m.mayFlipBelow(tc.dir); got != tc.mayFlip {
			t.Errorf("mayFlipBelow(%q) = %v, want %v", tc.dir, got, tc.mayFlip)
		}
		if !tc.mayFlip {
			continue
		}
		names, all := m.nextNames(tc.dir)
		if all != tc.wantAll || !cmp.Equal(names, tc.wantNames) {
			t.Errorf("nextNames(%q) = %q, %v; want %q, %v", tc.dir, names, all, tc.wantNames, tc.wantAll)
		}
	}
}
