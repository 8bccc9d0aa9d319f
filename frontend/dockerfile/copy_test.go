package dockerfile

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/builderdev/builder/frontend/platform"
	"github.com/builderdev/builder/llb"
)

// caseContextOptions reads the optional named contexts ("contexts": NAME=VALUE lines)
// and .dockerignore patterns ("excludes": one a line) of a golden case.
func caseContextOptions(t testing.TB, dir string, opt *Options) {
	t.Helper()
	if dt, err := os.ReadFile(filepath.Join(dir, "contexts")); err == nil {
		opt.NamedContexts = map[string]string{}
		for line := range strings.Lines(string(dt)) {
			if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
				opt.NamedContexts[k] = v
			}
		}
	}
	if dt, err := os.ReadFile(filepath.Join(dir, "excludes")); err == nil {
		opt.ContextExcludes = strings.Fields(string(dt))
	}
}

// vertices returns the vertices of st's graph by kind, in walk order.
func vertices(t *testing.T, st llb.State) map[string][]*llb.Vertex {
	t.Helper()
	out := map[string][]*llb.Vertex{}
	if st.IsScratch() {
		return out
	}
	if err := llb.Walk(st.Vertex(), func(v *llb.Vertex) error {
		out[v.Op().Kind()] = append(out[v.Op().Kind()], v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// sources returns the source ops of st's graph by identifier.
func sources(t *testing.T, st llb.State) map[string]*llb.SourceOp {
	t.Helper()
	out := map[string]*llb.SourceOp{}
	for _, v := range vertices(t, st)["source"] {
		op := v.Op().(*llb.SourceOp)
		out[op.Identifier] = op
	}
	return out
}

// copyActions returns the copy actions of st's graph with the identifier of the
// source each reads ("" when it reads another op's result).
func copyActions(t *testing.T, st llb.State) []struct {
	From   string
	Action llb.CopyAction
} {
	t.Helper()
	var out []struct {
		From   string
		Action llb.CopyAction
	}
	for _, v := range vertices(t, st)["file"] {
		for _, a := range v.Op().(*llb.FileOp).Actions {
			if a.Copy == nil {
				continue
			}
			from := ""
			if src, ok := v.Inputs()[a.Copy.From].Op().(*llb.SourceOp); ok {
				from = src.Identifier
			}
			out = append(out, struct {
				From   string
				Action llb.CopyAction
			}{from, *a.Copy})
		}
	}
	return out
}

func convertString(t *testing.T, df string, opt Options) (*Result, error) {
	t.Helper()
	if opt.Resolver == nil {
		opt.Resolver = &fakeResolver{}
	}
	opt.Platform = testPlatform
	return Convert(t.Context(), []byte(df), opt)
}

func TestCopyAddSources(t *testing.T) {
	u32 := func(v uint32) *uint32 { return &v }
	tests := []struct {
		name  string
		df    string
		attrs map[string]map[string]string // source identifier → attrs
		want  map[string]llb.CopyAction    // source identifier → its copy action
	}{
		{
			name: "ADD local archive unpacks",
			df:   "FROM scratch\nADD a.tar /x/\n",
			want: map[string]llb.CopyAction{"local://context": {Src: []string{"a.tar"}, Dest: "/x/", AllowWildcard: true, FollowSymlinks: true, AutoExtract: true}},
		},
		{
			name: "ADD --unpack=false",
			df:   "FROM scratch\nADD --unpack=false a.tar /x/\n",
			want: map[string]llb.CopyAction{"local://context": {Src: []string{"a.tar"}, Dest: "/x/", AllowWildcard: true, FollowSymlinks: true}},
		},
		{
			name: "COPY never unpacks",
			df:   "FROM scratch\nCOPY a.tar /x/\n",
			want: map[string]llb.CopyAction{"local://context": {Src: []string{"a.tar"}, Dest: "/x/", AllowWildcard: true, FollowSymlinks: true}},
		},
		{
			name:  "URL keeps its file name, dest renames",
			df:    "FROM scratch\nADD --chmod=640 https://example.com/a/b.tgz?x=1 /opt/c.tgz\n",
			attrs: map[string]map[string]string{"https://example.com/a/b.tgz?x=1": {llb.AttrHTTPFilename: "b.tgz"}},
			want:  map[string]llb.CopyAction{"https://example.com/a/b.tgz?x=1": {Src: []string{"b.tgz"}, Dest: "/opt/c.tgz", Mode: u32(0o640)}},
		},
		{
			name:  "URL without a path is __unnamed__",
			df:    "FROM scratch\nADD --unpack=true http://example.com /d/\n",
			attrs: map[string]map[string]string{"http://example.com": {llb.AttrHTTPFilename: "__unnamed__"}},
			want:  map[string]llb.CopyAction{"http://example.com": {Src: []string{"__unnamed__"}, Dest: "/d/", AutoExtract: true}},
		},
		{
			name: "git fragment ref and subdir",
			df:   "FROM scratch\nADD --chown=1:1 git@github.com:moby/buildkit.git#v0.10.1:docs /docs\n",
			attrs: map[string]map[string]string{"git://git@github.com:moby/buildkit.git": {
				llb.AttrGitRef: "v0.10.1", llb.AttrGitSubdir: "docs"}},
			want: map[string]llb.CopyAction{"git://git@github.com:moby/buildkit.git": {Src: []string{"."}, Dest: "/docs", Chown: &llb.ChownOpt{User: "1", Group: "1"}}},
		},
		{
			name: "git keep-git-dir and checksum",
			df:   "FROM scratch\nADD --keep-git-dir --checksum=abc123 https://github.com/moby/buildkit.git /src/\n",
			attrs: map[string]map[string]string{"git://https://github.com/moby/buildkit.git": {
				llb.AttrGitKeepDir: "true", llb.AttrGitChecksum: "abc123"}},
			want: map[string]llb.CopyAction{"git://https://github.com/moby/buildkit.git": {Src: []string{"."}, Dest: "/src/"}},
		},
		{
			name: "github.com/x/y without scheme is a local path",
			df:   "FROM scratch\nADD github.com/moby/buildkit /src/\n",
			want: map[string]llb.CopyAction{"local://context": {Src: []string{"github.com/moby/buildkit"}, Dest: "/src/", AllowWildcard: true, FollowSymlinks: true, AutoExtract: true}},
		},
		{
			name: "parents pivot and exclude",
			df:   "FROM scratch\nCOPY --parents --exclude=*.md a/./b/c /x/./y z/../w /d/\n",
			want: map[string]llb.CopyAction{"local://context": {Src: []string{"a/./b/c", "x/./y", "w"}, Dest: "/d/", AllowWildcard: true, FollowSymlinks: true,
				Parents: true, Exclude: []string{"*.md"}}},
		},
		{
			// BuildKit copies each source to dest in turn; only a trailing "/" makes
			// dest a directory (the conformance case copy-multiple-no-slash, which
			// Docker's BuildKit confirmed, shows the last source winning).
			name:  "several sources without a slash each land on dest",
			df:    "FROM scratch\nADD a https://example.com/b /dir\n",
			attrs: map[string]map[string]string{"https://example.com/b": {llb.AttrHTTPFilename: "b"}},
			want: map[string]llb.CopyAction{
				"local://context":       {Src: []string{"a"}, Dest: "/dir", AllowWildcard: true, FollowSymlinks: true, AutoExtract: true},
				"https://example.com/b": {Src: []string{"b"}, Dest: "/dir"},
			},
		},
		{
			name: "several sources with a slash go into the directory",
			df:   "FROM scratch\nCOPY a b /dir/\n",
			want: map[string]llb.CopyAction{
				"local://context": {Src: []string{"a", "b"}, Dest: "/dir/", AllowWildcard: true, FollowSymlinks: true},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := convertString(t, tc.df, Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]llb.CopyAction{}
			for _, ca := range copyActions(t, res.State) {
				ca.Action.From = 0
				got[ca.From] = ca.Action
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("copy actions (-want +got):\n%s", diff)
			}
			srcs := sources(t, res.State)
			for id, want := range tc.attrs {
				op, ok := srcs[id]
				if !ok {
					t.Fatalf("no source %q; have %v", id, srcs)
				}
				if diff := cmp.Diff(want, op.Attrs); diff != "" {
					t.Errorf("attrs of %s (-want +got):\n%s", id, diff)
				}
			}
		})
	}
}

func TestCopyHeredoc(t *testing.T) {
	df := "FROM busybox\nARG V=1\nENV W=2\n" +
		"COPY --chmod=600 <<EOF <<\"RAW\" <<-TABS /etc/\n$V-${W}-\"q\"\nEOF\n$V\nRAW\n\t\tx$W\n\tTABS\n"
	res, err := convertString(t, df, Options{})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, v := range vertices(t, res.State)["file"] {
		for _, a := range v.Op().(*llb.FileOp).Actions {
			if a.Mkfile != nil {
				files[a.Mkfile.Path] = string(a.Mkfile.Data)
				if a.Mkfile.Mode != 0o644 {
					t.Errorf("%s: mode %o, want 0644", a.Mkfile.Path, a.Mkfile.Mode)
				}
				if v.Meta().Description != "[internal] preparing inline document" {
					t.Errorf("mkfile description %q", v.Meta().Description)
				}
			}
		}
	}
	// Unquoted delimiters expand (quotes kept), a quoted one does not, <<- strips tabs.
	want := map[string]string{"/EOF": "1-2-\"q\"\n", "/RAW": "$V\n", "/TABS": "x2\n"}
	if diff := cmp.Diff(want, files); diff != "" {
		t.Errorf("inline files (-want +got):\n%s", diff)
	}
	acts := copyActions(t, res.State)
	if len(acts) != 3 {
		t.Fatalf("%d copy actions, want 3", len(acts))
	}
	for _, a := range acts {
		if a.Action.Dest != "/etc/" || a.Action.Mode == nil || *a.Action.Mode != 0o600 {
			t.Errorf("copy %v to %s mode %v, want /etc/ 0600", a.Action.Src, a.Action.Dest, a.Action.Mode)
		}
	}
	last := res.Image.History[len(res.Image.History)-1].CreatedBy
	if want := "COPY --chmod=600 <<EOF <<RAW <<TABS /etc/ # buildkit"; last != want {
		t.Errorf("history %q, want %q", last, want)
	}
}

func TestContextExcludes(t *testing.T) {
	for _, tc := range []struct {
		excludes []string
		want     map[string]string
	}{
		{excludes: nil, want: nil},
		{excludes: []string{"*.log", "!keep.log"}, want: map[string]string{llb.AttrLocalExcludes: `["*.log","!keep.log"]`}},
	} {
		res, err := convertString(t, "FROM scratch\nCOPY . /\n", Options{ContextExcludes: tc.excludes})
		if err != nil {
			t.Fatal(err)
		}
		op := sources(t, res.State)["local://context"]
		if op == nil {
			t.Fatal("no context source")
		}
		if diff := cmp.Diff(tc.want, op.Attrs); diff != "" {
			t.Errorf("excludes %q: attrs (-want +got):\n%s", tc.excludes, diff)
		}
	}
}

func TestCopyLinkIsPlainCopy(t *testing.T) {
	a, err := convertString(t, "FROM busybox\nCOPY --link --chown=1:2 a /a\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := convertString(t, "FROM busybox\nCOPY --chown=1:2 a /a\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a.State.Vertex().Digest() != b.State.Vertex().Digest() {
		t.Error("COPY --link lowers to another graph than COPY")
	}
}

// layoutResolver resolves oci-layout:// references to themselves (pinned) with a
// busybox config, and everything else like fakeResolver.
type layoutResolver struct{ fakeResolver }

func (r *layoutResolver) ResolveImageConfig(ctx context.Context, ref string, p ocispec.Platform) (string, []byte, error) {
	if strings.HasPrefix(ref, llb.OCILayoutScheme) {
		r.mu.Lock()
		r.calls = append(r.calls, ref)
		r.mu.Unlock()
		return ref, []byte(busyboxConfig), nil
	}
	return r.fakeResolver.ResolveImageConfig(ctx, ref, p)
}

func TestNamedContexts(t *testing.T) {
	layout := "oci-layout:///srv/layout@sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7"
	tests := []struct {
		name      string
		df        string
		contexts  map[string]string
		wantSrc   []string // source identifiers in the graph
		wantCalls []string
		wantHist  []string // CreatedBy of the result's history
	}{
		{
			name:      "FROM oci layout",
			df:        "FROM base\nRUN true\n",
			contexts:  map[string]string{"base": layout},
			wantSrc:   []string{layout},
			wantCalls: []string{layout},
			wantHist:  []string{"BusyBox 1.37.0 (glibc), Debian 12", `CMD ["sh"]`, "RUN /bin/sh -c true # buildkit"},
		},
		{
			name:      "FROM local directory is a copy on scratch",
			df:        "FROM src\nRUN true\n",
			contexts:  map[string]string{"src": "local://context:src"},
			wantSrc:   []string{"local://context:src"},
			wantCalls: nil,
			wantHist:  []string{"FROM src # local context", "RUN /bin/sh -c true # buildkit"},
		},
		{
			name:      "image name with tag and registry",
			df:        "FROM docker.io/library/alpine:latest\nCOPY --from=busybox:1.36 / /\nRUN --mount=from=ghcr.io/o/r:v1,target=/r true\n",
			contexts:  map[string]string{"alpine": "docker-image://golang:1.22", "busybox:1.36": "docker-image://busybox:1.37", "ghcr.io/o/r:v1": "docker-image://alpine"},
			wantCalls: []string{"alpine", "busybox:1.37", "golang:1.22"},
		},
		{
			name:      "scratch and context are never replaced",
			df:        "FROM scratch\nCOPY . /\n",
			contexts:  map[string]string{"scratch": "docker-image://busybox", "context": "local://other"},
			wantSrc:   []string{"local://context"},
			wantCalls: nil,
		},
		{
			name:      "stage replaced: its commands and their images are skipped",
			df:        "FROM golang AS build\nCOPY --from=nosuch / /\nRUN make\nFROM scratch\nCOPY --from=build /x /x\n",
			contexts:  map[string]string{"build": "docker-image://alpine"},
			wantSrc:   []string{"docker-image://docker.io/library/alpine:latest@sha256:27a73a0b3b0fd4a8a6f4a1e8e8f0e16f5b4b7a3ae18d5cdb0b5d4e5b5e3b0e4e"},
			wantCalls: []string{"alpine"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &layoutResolver{}
			res, err := convertString(t, tc.df, Options{NamedContexts: tc.contexts, Resolver: r})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantCalls, r.Calls()); diff != "" {
				t.Errorf("resolver calls (-want +got):\n%s", diff)
			}
			srcs := sources(t, res.State)
			for _, id := range tc.wantSrc {
				if strings.HasPrefix(id, llb.ImageScheme) {
					// The fake pins by a digest of name:tag; compare the name only.
					id = id[:strings.Index(id, "@")]
					found := false
					for have := range srcs {
						found = found || strings.HasPrefix(have, id+"@")
					}
					if !found {
						t.Errorf("no source %s; have %v", id, srcs)
					}
					continue
				}
				if srcs[id] == nil {
					t.Errorf("no source %s; have %v", id, srcs)
				}
			}
			if tc.wantHist != nil {
				var hist []string
				for _, h := range res.Image.History {
					hist = append(hist, h.CreatedBy)
				}
				if diff := cmp.Diff(tc.wantHist, hist); diff != "" {
					t.Errorf("history (-want +got):\n%s", diff)
				}
			}
			checkResult(t, res)
		})
	}
}

func TestFromByDigest(t *testing.T) {
	ref := "busybox@sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7"
	r := &digestResolver{}
	res, err := convertString(t, "FROM "+ref+"\nRUN true\n", Options{Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{ref}, r.calls); diff != "" {
		t.Errorf("resolver calls (-want +got):\n%s", diff)
	}
	if srcs := sources(t, res.State); srcs["docker-image://docker.io/library/"+ref] == nil {
		t.Errorf("image source not pinned to the digest: %v", srcs)
	}
}

// digestResolver pins a digest reference to itself.
type digestResolver struct{ calls []string }

func (r *digestResolver) ResolveImageConfig(_ context.Context, ref string, _ ocispec.Platform) (string, []byte, error) {
	r.calls = append(r.calls, ref)
	return "docker.io/library/" + ref, []byte(busyboxConfig), nil
}

func TestFamiliarName(t *testing.T) {
	for in, want := range map[string]string{
		"alpine":                        "alpine",
		"alpine:latest":                 "alpine",
		"docker.io/library/alpine:3.19": "alpine:3.19",
		"index.docker.io/foo/bar":       "foo/bar",
		"ghcr.io/o/r:v1":                "ghcr.io/o/r:v1",
		"localhost:5000/x":              "localhost:5000/x",
		"UPPER":                         "UPPER",
		"docker.io/library/a/b":         "library/a/b",
		"alpine@sha256:" + strings.Repeat("a", 64): "alpine@sha256:" + strings.Repeat("a", 64),
	} {
		if got := familiarName(in); got != want {
			t.Errorf("familiarName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLintWarnings(t *testing.T) {
	type warning struct {
		Line int
		Msg  string
	}
	tests := []struct {
		name string
		df   string
		want []warning
	}{
		{
			name: "syntax directive and casing rules",
			df:   "# syntax=docker/dockerfile:1\nFROM busybox as Build\nCMD echo hi\nENV A 1\nWORKDIR rel\n",
			want: []warning{
				{1, "# syntax=docker/dockerfile:1: builder uses its built-in frontend"},
				{2, "StageNameCasing: Stage name 'Build' should be lowercase"},
				{2, "FromAsCasing: 'as' and 'FROM' keywords' casing do not match"},
				{3, "JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals"},
				{4, "LegacyKeyValueFormat: \"ENV key=value\" should be used instead of legacy \"ENV key value\" format"},
				{5, "WorkdirRelativePath: Relative workdir \"rel\" can have unexpected results if the base image changes"},
			},
		},
		{
			name: "empty continuation line",
			df:   "FROM busybox\nRUN echo a \\\n\n  b\n",
			want: []warning{{4, "NoEmptyContinuation: Empty continuation line"}}, // BuildKit names the line after the empty one
		},
		{
			name: "check skip",
			df:   "# check=skip=JSONArgsRecommended,StageNameCasing\nFROM busybox AS Build\nCMD echo hi\n",
		},
		{
			name: "SHELL set: no JSONArgsRecommended",
			df:   "FROM busybox\nSHELL [\"/bin/bash\", \"-c\"]\nCMD echo hi\n",
		},
		{
			name: "duplicate and reserved stage names",
			df:   "FROM busybox AS a\nFROM busybox AS a\nFROM busybox AS context\n",
			want: []warning{
				{2, "DuplicateStageName: Duplicate stage name \"a\", stage names should be unique"},
				{3, "ReservedStageName: Stage name should not use the same name as reserved stage \"context\""},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []warning
			_, err := convertString(t, tc.df, Options{Warn: func(file string, line int, msg string) {
				if file != "Dockerfile" {
					t.Errorf("warning file %q", file)
				}
				got = append(got, warning{line, msg})
			}})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckErrorWithoutWarnFunc(t *testing.T) {
	_, err := convertString(t, "# check=error=true\nFROM busybox\nCMD echo hi\n", Options{})
	if err == nil || !strings.Contains(err.Error(), "lint violation found for rules: JSONArgsRecommended") {
		t.Errorf("err = %v, want the lint violation", err)
	}
}

func TestMountSource(t *testing.T) {
	df := "FROM busybox AS a\nRUN true\n"
	cv, stages := prepared(t, df, Options{NamedContexts: map[string]string{"tools": "local://context:tools"}})
	a, b := stages[0], stages[1]
	tests := []struct {
		from    string
		wantID  string // source identifier of the state, "" for a stage's state
		wantErr string
	}{
		{from: "", wantID: "local://context"},
		{from: "tools", wantID: "local://context:tools"},
		{from: "a"},
		{from: "0"},
		{from: "b", wantErr: `stage "b" must be defined before the stage that mounts it`},
		{from: "busybox", wantID: "docker-image://docker.io/library/busybox:latest@"},
		{from: "nosuch", wantErr: `stage "nosuch" not found, and resolving it as an image`},
	}
	for _, tc := range tests {
		st, err := cv.mountSource(b, tc.from)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("mountSource(%q) err = %v, want %q", tc.from, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("mountSource(%q): %v", tc.from, err)
			continue
		}
		if tc.wantID == "" {
			if st.Vertex() != a.state.Vertex() {
				t.Errorf("mountSource(%q) is not stage a", tc.from)
			}
			continue
		}
		src, ok := st.Vertex().Op().(*llb.SourceOp)
		if !ok || !strings.HasPrefix(src.Identifier, tc.wantID) {
			t.Errorf("mountSource(%q) = %v, want source %s", tc.from, st.Vertex().Op(), tc.wantID)
		}
	}
}

// prepared is a converter as it is while lowering the second of two stages "a" and
// "b": a is done (lowered from df), images busybox and nosuch are resolved.
func prepared(t *testing.T, df string, opt Options) (*converter, []*stage) {
	t.Helper()
	opt.Platform = testPlatform
	if opt.Resolver == nil {
		opt.Resolver = &fakeResolver{}
	}
	res, err := convertString(t, df, opt)
	if err != nil {
		t.Fatal(err)
	}
	opt.ContextName = defaultContextName
	c := &converter{opt: opt, file: "Dockerfile", images: map[imageKey]*baseImage{},
		lex: shell.NewLex('\\'), empty: shell.EnvsFromSlice(nil)}
	for _, ref := range []string{"busybox", "nosuch"} {
		c.images[imageKey{ref, platform.Format(testPlatform)}] = c.resolve(t.Context(), ref, testPlatform)
	}
	a := &stage{index: 0, inst: instructions.Stage{Name: "a"}, done: true, state: res.State, platform: testPlatform}
	b := &stage{index: 1, inst: instructions.Stage{Name: "b"}, platform: testPlatform}
	c.stages = []*stage{a, b}
	return c, c.stages
}

func TestHistoryAndDescriptionsOfTriggers(t *testing.T) {
	df := "FROM busybox AS base\nONBUILD RUN echo a\nONBUILD WORKDIR /w\n\nFROM base\nRUN echo b\n"
	res, err := convertString(t, df, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var descs []string
	for _, v := range vertices(t, res.State)["exec"] {
		descs = append(descs, v.Meta().Description)
		if loc := v.Meta().Location; loc != nil && strings.Contains(v.Meta().Description, "ONBUILD") && loc.StartLine != 5 {
			t.Errorf("trigger vertex located at line %d, want the FROM line 5", loc.StartLine)
		}
	}
	for _, v := range vertices(t, res.State)["file"] {
		descs = append(descs, v.Meta().Description)
	}
	want := []string{"[stage-1 3/3] RUN echo b", "[stage-1 1/3] ONBUILD RUN echo a", "[stage-1 2/3] ONBUILD WORKDIR /w"}
	if diff := cmp.Diff(want, descs, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("descriptions (-want +got):\n%s", diff)
	}
	if res.DockerConfig.OnBuild != nil {
		t.Errorf("child config keeps triggers %q", res.DockerConfig.OnBuild)
	}
	if res.Image.Config.WorkingDir != "/w" {
		t.Errorf("WorkingDir %q, want /w from the trigger", res.Image.Config.WorkingDir)
	}
	dt, _ := json.Marshal(res.Image.History)
	if !strings.Contains(string(dt), "RUN /bin/sh -c echo a # buildkit") {
		t.Errorf("trigger RUN not in history: %s", dt)
	}
}
