package dockerfile

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/builderdev/builder/llb"
)

// convertExecs lowers df and returns the exec ops of the target's graph by their
// description (without the "[n/m] " step prefix).
func convertExecs(t *testing.T, df string, opt Options) (map[string]*llb.ExecOp, *Result) {
	t.Helper()
	if opt.Resolver == nil {
		opt.Resolver = &fakeResolver{}
	}
	opt.Platform = testPlatform
	res, err := Convert(t.Context(), []byte(df), opt)
	if err != nil {
		t.Fatalf("Convert: %v", err)
	}
	checkResult(t, res)
	execs := map[string]*llb.ExecOp{}
	if err := llb.Walk(res.State.Vertex(), func(v *llb.Vertex) error {
		if e, ok := v.Op().(*llb.ExecOp); ok {
			desc := v.Meta().Description
			if _, rest, ok := strings.Cut(desc, "] "); ok {
				desc = rest
			}
			execs[desc] = e
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return execs, res
}

func TestRunMountFromMakesStageNeeded(t *testing.T) {
	// Stage tools is only reachable through RUN --mount: it must be lowered before the
	// last stage, and the image mounted must be resolved like a COPY --from image.
	df := `FROM alpine AS tools
RUN echo tool > /tool

FROM golang:1.22 AS unused
RUN --mount=from=busybox:1.36,target=/bb true

FROM busybox
RUN --mount=from=tools,source=/tool,target=/usr/bin/tool --mount=type=cache,from=tools,target=/c tool
RUN --mount=from=busybox:1.36,target=/bb ls /bb
`
	r := &fakeResolver{}
	execs, _ := convertExecs(t, df, Options{Resolver: r})
	if diff := cmp.Diff([]string{"alpine", "busybox", "busybox:1.36"}, r.Calls()); diff != "" {
		t.Errorf("resolver calls (-want +got):\n%s", diff)
	}
	if _, ok := execs["RUN echo tool > /tool"]; !ok {
		t.Fatalf("stage tools was not lowered; execs: %q", slices.Collect(maps.Keys(execs)))
	}
	e := execs["RUN --mount=from=tools,source=/tool,target=/usr/bin/tool --mount=type=cache,from=tools,target=/c tool"]
	if e == nil {
		t.Fatal("mounting RUN not found")
	}
	// Both mounts read the same vertex: one input, shared.
	if len(e.Mounts) != 2 || e.Mounts[0].Input != 1 || e.Mounts[1].Input != 1 || e.Root != 0 {
		t.Errorf("mount inputs: root %d, mounts %+v", e.Root, e.Mounts)
	}
}

func TestRunMountUnusedStageErrorsOnlyWhenNeeded(t *testing.T) {
	df := "FROM busybox AS broken\nRUN --mount=from=nosuch,target=/x true\nFROM busybox\nRUN true\n"
	if _, err := Convert(t.Context(), []byte(df), Options{Resolver: &fakeResolver{}, Platform: testPlatform}); err != nil {
		t.Errorf("building the last stage: %v", err)
	}
	_, err := Convert(t.Context(), []byte(df), Options{Target: "broken", Resolver: &fakeResolver{}, Platform: testPlatform})
	if err == nil || !strings.Contains(err.Error(), "Dockerfile:2: RUN --mount: from=nosuch") {
		t.Errorf("err = %v, want the unknown from= at line 2", err)
	}
}

func TestRunSecretOnlyNamesInGraph(t *testing.T) {
	df := `FROM busybox
RUN --mount=type=secret,id=api,env=API_TOKEN,required curl -H "token: $API_TOKEN" https://example.com
`
	execs, res := convertExecs(t, df, Options{})
	var e *llb.ExecOp
	var desc string
	if err := llb.Walk(res.State.Vertex(), func(v *llb.Vertex) error {
		if x, ok := v.Op().(*llb.ExecOp); ok {
			e, desc = x, v.Meta().Description
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(execs) != 1 || e == nil {
		t.Fatalf("want one exec, got %d", len(execs))
	}
	want := []llb.Mount{{Type: llb.MountSecret, Input: llb.NoInput, SecretID: "api", Env: "API_TOKEN", Required: true}}
	if diff := cmp.Diff(want, e.Mounts); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	// The variable is set by the executor from the secret store at run time: it is not
	// part of the op's environment, so neither its value nor a placeholder is hashed.
	for _, kv := range e.Env {
		if strings.HasPrefix(kv, "API_TOKEN=") {
			t.Errorf("secret variable in the exec env: %q", kv)
		}
	}
	if !strings.Contains(desc, `"token: ****"`) {
		t.Errorf("description %q does not mask the secret variable", desc)
	}
	if strings.Contains(res.Image.History[len(res.Image.History)-1].CreatedBy, "****") {
		t.Errorf("history masks what the shell will expand: %q", res.Image.History[len(res.Image.History)-1].CreatedBy)
	}
}

func TestRunSecretIDChangesKey(t *testing.T) {
	digestOf := func(df string) string {
		res, err := Convert(t.Context(), []byte(df), Options{Resolver: &fakeResolver{}, Platform: testPlatform})
		if err != nil {
			t.Fatal(err)
		}
		return res.State.Vertex().Digest().String()
	}
	a := digestOf("FROM busybox\nRUN --mount=type=secret,id=a cat /run/secrets/a\n")
	b := digestOf("FROM busybox\nRUN --mount=type=secret,id=b,target=/run/secrets/a cat /run/secrets/a\n")
	again := digestOf("FROM busybox\nRUN --mount=type=secret,id=a,target=/run/secrets/a cat /run/secrets/a\n")
	if a == b {
		t.Error("secret id is not part of the exec's digest")
	}
	if a != again {
		t.Error("the default secret target differs from the same target written out")
	}
}

func TestRunHeredocScript(t *testing.T) {
	df := "FROM busybox\nRUN <<-PY\n\t#!/usr/bin/env python3\n\tprint('hi')\nPY\n"
	var mk *llb.MkfileAction
	execs, res := convertExecs(t, df, Options{NoCache: true})
	if err := llb.Walk(res.State.Vertex(), func(v *llb.Vertex) error {
		if !v.Meta().IgnoreCache {
			t.Errorf("vertex %q ignores NoCache", v.Meta().Description)
		}
		if f, ok := v.Op().(*llb.FileOp); ok && len(f.Actions) == 1 && f.Actions[0].Mkfile != nil {
			mk = f.Actions[0].Mkfile
			if f.Base != llb.NoInput {
				t.Errorf("script written on top of input %d, want scratch", f.Base)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if mk == nil {
		t.Fatal("no mkfile for the script")
	}
	if diff := cmp.Diff(llb.MkfileAction{Path: "/PY", Data: []byte("#!/usr/bin/env python3\nprint('hi')\n"), Mode: 0o755}, *mk); diff != "" {
		t.Errorf("script (-want +got):\n%s", diff)
	}
	e := execs["RUN <<-PY (#!/usr/bin/env python3...)"]
	if e == nil {
		t.Fatalf("exec not found: %v", execs)
	}
	if diff := cmp.Diff([]string{"/bin/sh", "-c", "/dev/pipes/PY"}, e.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]llb.Mount{{Type: llb.MountBind, Target: "/dev/pipes", Input: 1}}, e.Mounts); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	if got := res.Image.History[len(res.Image.History)-1].CreatedBy; got != "RUN /bin/sh -c /dev/pipes/PY # buildkit" {
		t.Errorf("history %q", got)
	}
}

func TestRunMountValuesExpand(t *testing.T) {
	df := `FROM busybox
ARG GOCACHE=/root/.cache/go-build
ENV UID=1000 SRC=cmd/app
WORKDIR /src
RUN --mount=type=cache,target=$GOCACHE,uid=${UID},id=go-${TARGETARCH} go build
RUN --mount=type=bind,source=$SRC,target=rel go build
`
	tests := []struct {
		name  string
		args  map[string]string
		want0 llb.Mount
	}{
		{name: "defaults", want0: llb.Mount{Type: llb.MountCache, Target: "/root/.cache/go-build", Input: llb.NoInput,
			ReadWrite: true, CacheID: "go-", Sharing: llb.SharingShared, UID: new(uint32(1000))}},
		{name: "build args", args: map[string]string{"GOCACHE": "/cache", "TARGETARCH": "arm64"},
			want0: llb.Mount{Type: llb.MountCache, Target: "/cache", Input: llb.NoInput,
				ReadWrite: true, CacheID: "go-", Sharing: llb.SharingShared, UID: new(uint32(1000))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			execs, _ := convertExecs(t, df, Options{BuildArgs: tc.args})
			var cache, bind *llb.ExecOp
			for desc, e := range execs {
				switch {
				case strings.Contains(desc, "type=cache"):
					cache = e
				case strings.Contains(desc, "type=bind"):
					bind = e
				}
			}
			if cache == nil || bind == nil {
				t.Fatalf("execs: %v", execs)
			}
			// TARGETARCH is a global arg: out of the stage's scope without ARG TARGETARCH.
			if diff := cmp.Diff([]llb.Mount{tc.want0}, cache.Mounts); diff != "" {
				t.Errorf("cache mount (-want +got):\n%s", diff)
			}
			want := []llb.Mount{{Type: llb.MountBind, Target: "/src/rel", Input: 1, Source: "/cmd/app"}}
			if diff := cmp.Diff(want, bind.Mounts); diff != "" {
				t.Errorf("bind mount (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunErrorFields(t *testing.T) {
	tests := []struct {
		name      string
		df        string
		line, end int
		instr     string
		msg       string
	}{
		{name: "missing cache target over two lines", df: "FROM busybox\nRUN --mount=type=cache \\\n  make\n",
			line: 2, end: 3, instr: "RUN --mount", msg: "type=cache: target is required"},
		{name: "unknown stage", df: "FROM busybox AS build\nFROM busybox\n\nRUN --mount=from=biuld,target=/b ls\n",
			line: 4, end: 4, instr: "RUN --mount", msg: `from=biuld: stage "biuld" not found (did you mean "build"?)`},
		{name: "insecure", df: "FROM busybox\nRUN --security=insecure true\n",
			line: 2, end: 2, instr: "RUN --security=insecure", msg: "security.insecure: not supported"},
		{name: "bad mount type", df: "FROM busybox\nRUN --mount=type=volume,target=/v true\n",
			line: 2, end: 2, instr: "RUN", msg: `unsupported mount type "volume"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Convert(t.Context(), []byte(tc.df), Options{Target: "", Resolver: &fakeResolver{}, Platform: testPlatform})
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if fe.Line != tc.line || fe.EndLine != tc.end {
				t.Errorf("lines %d-%d, want %d-%d", fe.Line, fe.EndLine, tc.line, tc.end)
			}
			// The instruction names the flag; dispatch may add "--mount" to errors from
			// the flag's own parser.
			if !strings.HasPrefix(fe.Instruction, tc.instr) {
				t.Errorf("Instruction = %q, want prefix %q", fe.Instruction, tc.instr)
			}
			if !strings.Contains(fe.Err.Error(), tc.msg) {
				t.Errorf("message %q does not contain %q", fe.Err, tc.msg)
			}
		})
	}
}

func TestSummarizeHeredoc(t *testing.T) {
	tests := []struct{ doc, want string }{
		{"echo hi\n", "echo hi"},
		{"\n  set -e\r\necho a\n", "set -e..."},
		{"", ""},
	}
	for _, tc := range tests {
		if got := summarizeHeredoc(tc.doc); got != tc.want {
			t.Errorf("summarizeHeredoc(%q) = %q, want %q", tc.doc, got, tc.want)
		}
	}
}

func TestRunMountFromNamedContext(t *testing.T) {
	df := "FROM busybox\nRUN --mount=from=tools,target=/t,source=bin /t/lint\n"
	execs, res := convertExecs(t, df, Options{NamedContexts: map[string]string{"tools": "local://tools-dir"}})
	if len(execs) != 1 {
		t.Fatalf("execs: %v", execs)
	}
	var locals []string
	if err := llb.Walk(res.State.Vertex(), func(v *llb.Vertex) error {
		if src, ok := v.Op().(*llb.SourceOp); ok && strings.HasPrefix(src.Identifier, llb.LocalScheme) {
			locals = append(locals, src.Identifier)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The named context replaces the image "tools": the build context is not read.
	if diff := cmp.Diff([]string{"local://tools-dir"}, locals); diff != "" {
		t.Errorf("local sources (-want +got):\n%s", diff)
	}
	for _, e := range execs {
		want := []llb.Mount{{Type: llb.MountBind, Target: "/t", Input: 1, Source: "/bin"}}
		if diff := cmp.Diff(want, e.Mounts); diff != "" {
			t.Errorf("mounts (-want +got):\n%s", diff)
		}
	}
}

func TestRunProxyArgs(t *testing.T) {
	// Undeclared proxy args reach RUN but not the digest or the history; a stage that
	// declares one with ARG gets it like any other arg.
	df := `FROM busybox
RUN wget http://example.com/
ARG NO_PROXY
RUN true
`
	without, resWithout := convertExecs(t, df, Options{})
	with, res := convertExecs(t, df, Options{BuildArgs: map[string]string{
		"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "localhost", "OTHER": "x",
	}})
	wget := with["RUN wget http://example.com/"]
	if diff := cmp.Diff([]string{"HTTP_PROXY=http://proxy:3128", "NO_PROXY=localhost"}, wget.ProxyEnv); diff != "" {
		t.Errorf("ProxyEnv (-want +got):\n%s", diff)
	}
	if slices.ContainsFunc(wget.Env, func(e string) bool { return strings.Contains(e, "PROXY") }) {
		t.Errorf("proxy args in the hashed env: %v", wget.Env)
	}
	i := slices.IndexFunc(res.Image.History, func(h ocispec.History) bool { return strings.Contains(h.CreatedBy, "wget") })
	if i < 0 || res.History[i] == "" {
		t.Fatalf("no RUN wget layer in history %+v", res.Image.History)
	}
	if a, b := resWithout.History[i], res.History[i]; a != b {
		t.Errorf("the proxy changed the step's digest: %s vs %s", a, b)
	}
	if got := res.Image.History[i].CreatedBy; strings.Contains(got, "PROXY") {
		t.Errorf("history names the proxy: %q", got)
	}
	after := with["RUN true"]
	if !slices.Contains(after.Env, "NO_PROXY=localhost") || slices.Contains(after.ProxyEnv, "NO_PROXY=localhost") {
		t.Errorf("declared NO_PROXY: Env %v, ProxyEnv %v", after.Env, after.ProxyEnv)
	}
	if !slices.Contains(after.ProxyEnv, "HTTP_PROXY=http://proxy:3128") {
		t.Errorf("undeclared HTTP_PROXY missing after ARG NO_PROXY: %v", after.ProxyEnv)
	}
	if len(without["RUN true"].ProxyEnv) != 0 {
		t.Errorf("ProxyEnv without build args: %v", without["RUN true"].ProxyEnv)
	}
}
