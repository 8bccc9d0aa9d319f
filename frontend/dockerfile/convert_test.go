package dockerfile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/builderdev/builder/frontend/platform"
	"github.com/builderdev/builder/llb"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var testPlatform = ocispec.Platform{OS: "linux", Architecture: "amd64"}

// fakeResolver knows a few busybox-like images, as multi-platform indexes: each
// platform gets its own pinned digest (amd64 keeps the one the golden files know) and
// a config that names the platform. It records every lookup.
type fakeResolver struct {
	mu    sync.Mutex
	calls []string
	// resolved lists "REF PLATFORM" per lookup.
	resolved []string
}

// busyboxConfig is a trimmed copy of the shape of busybox's config.
const busyboxConfig = `{
  "architecture": "amd64",
  "os": "linux",
  "created": "2024-09-26T21:31:42Z",
  "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
  "rootfs": {"type": "layers", "diff_ids": ["sha256:a16e98724c05975ee8c40d8fe389c3481373d34ab20a1cf52ea2accc43f71f4c"]},
  "history": [
    {"created": "2024-09-26T21:31:42Z", "created_by": "BusyBox 1.37.0 (glibc), Debian 12"},
    {"created": "2024-09-26T21:31:42Z", "created_by": "CMD [\"sh\"]", "empty_layer": true}
  ]
}`

func (r *fakeResolver) ResolveImageConfig(ctx context.Context, ref string, p ocispec.Platform) (string, []byte, error) {
	r.mu.Lock()
	r.calls = append(r.calls, ref)
	r.resolved = append(r.resolved, ref+" "+platform.Format(p))
	r.mu.Unlock()
	name, tag := ref, "latest"
	if i := strings.LastIndex(ref, ":"); i >= 0 {
		name, tag = ref[:i], ref[i+1:]
	}
	switch name {
	case "busybox", "alpine", "golang":
	default:
		return "", nil, fmt.Errorf("%s: not found", ref)
	}
	if p.Architecture == "amd64" {
		pinned := "docker.io/library/" + name + ":" + tag + "@" + digest.FromString(name+":"+tag).String()
		return pinned, []byte(busyboxConfig), nil
	}
	pinned := "docker.io/library/" + name + ":" + tag + "@" + digest.FromString(name+":"+tag+" "+platform.Format(p)).String()
	cfg := strings.Replace(busyboxConfig, `"architecture": "amd64"`, fmt.Sprintf(`"architecture": %q`, p.Architecture), 1)
	return pinned, []byte(cfg), nil
}

// Resolved returns the "REF PLATFORM" lookups, sorted.
func (r *fakeResolver) Resolved() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.resolved)
	slices.Sort(out)
	return out
}

func (r *fakeResolver) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.calls)
	slices.Sort(out)
	return out
}

// caseOptions reads the optional args (KEY=VALUE lines) and target files of a case.
func caseOptions(t testing.TB, dir string) Options {
	t.Helper()
	// The build platform is fixed too, so BUILDPLATFORM does not depend on the machine.
	opt := Options{Filename: "Dockerfile", Platform: testPlatform, BuildPlatform: testPlatform, Resolver: &fakeResolver{}}
	if dt, err := os.ReadFile(filepath.Join(dir, "platform")); err == nil {
		p, err := platform.Parse(strings.TrimSpace(string(dt)))
		if err != nil {
			t.Fatal(err)
		}
		opt.Platform = p
	}
	if dt, err := os.ReadFile(filepath.Join(dir, "args")); err == nil {
		opt.BuildArgs = map[string]string{}
		for line := range strings.Lines(string(dt)) {
			if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
				opt.BuildArgs[k] = v
			}
		}
	}
	if dt, err := os.ReadFile(filepath.Join(dir, "target")); err == nil {
		opt.Target = strings.TrimSpace(string(dt))
	}
	caseContextOptions(t, dir, &opt)
	return opt
}

func caseDirs(t testing.TB, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	if len(dirs) == 0 {
		t.Fatalf("no cases in %s", root)
	}
	return dirs
}

func TestConvertGolden(t *testing.T) {
	for _, name := range caseDirs(t, "testdata") {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join("testdata", name)
			df, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
			if err != nil {
				t.Fatal(err)
			}
			opt := caseOptions(t, dir)
			res, err := Convert(t.Context(), df, opt)
			if err != nil {
				t.Fatalf("Convert: %v", err)
			}
			checkResult(t, res)
			if got := platform.Format(ocispec.Platform{OS: res.Image.OS, Architecture: res.Image.Architecture, Variant: res.Image.Variant}); got != platform.Format(opt.Platform) {
				t.Errorf("image platform %s, want %s", got, platform.Format(opt.Platform))
			}

			llbJSON := []byte("null")
			if !res.State.IsScratch() {
				def, err := llb.Marshal(res.State.Vertex())
				if err != nil {
					t.Fatalf("llb.Marshal: %v", err)
				}
				if llbJSON, err = json.MarshalIndent(def, "", "  "); err != nil {
					t.Fatal(err)
				}
			}
			imgJSON, err := json.MarshalIndent(struct {
				Image   dockerspec.DockerOCIImage `json:"image"`
				History []digest.Digest           `json:"history"`
			}{res.DockerImage(), res.History}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join(dir, "llb.golden.json"), append(llbJSON, '\n'))
			golden(t, filepath.Join(dir, "image.golden.json"), append(imgJSON, '\n'))
		})
	}
}

func golden(t *testing.T, file string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", file, diff)
	}
}

// checkResult asserts the invariants every Result keeps: History lines up with the
// image history and names vertices of the graph, and the definition survives a JSON
// round trip with the same digests.
func checkResult(t *testing.T, res *Result) {
	t.Helper()
	if len(res.History) != len(res.Image.History) {
		t.Fatalf("len(History) = %d, len(Image.History) = %d", len(res.History), len(res.Image.History))
	}
	vertices := map[digest.Digest]bool{}
	if !res.State.IsScratch() {
		if err := llb.Walk(res.State.Vertex(), func(v *llb.Vertex) error {
			vertices[v.Digest()] = true
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		def, err := llb.Marshal(res.State.Vertex())
		if err != nil {
			t.Fatal(err)
		}
		dt, err := json.Marshal(def)
		if err != nil {
			t.Fatal(err)
		}
		var back llb.Definition
		if err := json.Unmarshal(dt, &back); err != nil {
			t.Fatal(err)
		}
		out, err := back.Graph()
		if err != nil {
			t.Fatalf("Graph of the marshalled definition: %v", err)
		}
		if out.Digest() != res.State.Vertex().Digest() {
			t.Errorf("round-tripped output %s, want %s", out.Digest(), res.State.Vertex().Digest())
		}
	}
	for i, h := range res.Image.History {
		d := res.History[i]
		if d != "" && !vertices[d] {
			t.Errorf("History[%d] = %s (%q) is not a vertex of the result", i, d, h.CreatedBy)
		}
		if h.Comment == historyComment && h.EmptyLayer != (d == "") {
			t.Errorf("History[%d] %q: EmptyLayer %v with vertex %q", i, h.CreatedBy, h.EmptyLayer, d)
		}
	}
	if res.Image.OS == "" || res.Image.Architecture == "" {
		t.Errorf("image platform %s/%s is incomplete", res.Image.OS, res.Image.Architecture)
	}
	for d := range res.RunPlatforms {
		if !vertices[d] {
			t.Errorf("RunPlatforms names %s, which is not a vertex of the result", d)
		}
	}
}

func TestConvertNegative(t *testing.T) {
	for _, name := range caseDirs(t, "testdata-negative") {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join("testdata-negative", name)
			df, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join(dir, "error"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Convert(t.Context(), df, caseOptions(t, dir))
			if err == nil {
				t.Fatal("Convert succeeded, want an error")
			}
			if !strings.Contains(err.Error(), strings.TrimSpace(string(want))) {
				t.Errorf("error %q does not contain %q", err, strings.TrimSpace(string(want)))
			}
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not an *Error", err)
			}
			if fe.File != "Dockerfile" {
				t.Errorf("Error.File = %q", fe.File)
			}
			if fe.Line > 0 && (fe.EndLine < fe.Line || fe.Line > bytes.Count(df, []byte("\n"))+1) {
				t.Errorf("Error lines %d-%d out of the file", fe.Line, fe.EndLine)
			}
		})
	}
}

func TestConvertResolvesOnlyNeededStages(t *testing.T) {
	df := []byte(`FROM alpine AS a
RUN echo a > /a

FROM golang:1.22 AS unused
COPY --from=nosuch /x /x
RUN go build

FROM busybox AS b
COPY --from=a /a /a
COPY --from=busybox:1.36 /bin/busybox /bb

FROM busybox
COPY --from=b /a /a
`)
	tests := []struct {
		name   string
		target string
		want   []string
	}{
		{name: "last stage", want: []string{"alpine", "busybox", "busybox:1.36"}},
		{name: "first stage", target: "a", want: []string{"alpine"}},
		{name: "middle stage", target: "b", want: []string{"alpine", "busybox", "busybox:1.36"}},
		{name: "unused stage", target: "unused", want: []string{"golang:1.22", "nosuch"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := &fakeResolver{}
			_, err := Convert(t.Context(), df, Options{Target: tc.target, Resolver: r, Platform: testPlatform})
			if tc.target == "unused" {
				if err == nil || !strings.Contains(err.Error(), "Dockerfile:5: COPY --from=nosuch") {
					t.Errorf("err = %v, want the unknown --from source reported at line 5", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			// Each reference is resolved once, however many stages use it.
			if diff := cmp.Diff(tc.want, r.Calls()); diff != "" {
				t.Errorf("resolver calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConvertDedupesIdenticalRun(t *testing.T) {
	res, err := Convert(t.Context(), []byte(`FROM busybox AS a
RUN echo same
FROM busybox AS b
RUN echo same
FROM scratch
COPY --from=a / /a
COPY --from=b / /b
`), Options{Resolver: &fakeResolver{}, Platform: testPlatform})
	if err != nil {
		t.Fatal(err)
	}
	def, err := llb.Marshal(res.State.Vertex())
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, v := range def.Vertices {
		kinds[v.Kind]++
	}
	// busybox, one RUN, the two COPYs.
	if diff := cmp.Diff(map[string]int{"source": 1, "exec": 1, "file": 2}, kinds); diff != "" {
		t.Errorf("vertex kinds (-want +got):\n%s", diff)
	}
}

func TestConvertNoCacheMarksEveryVertex(t *testing.T) {
	for _, noCache := range []bool{false, true} {
		res, err := Convert(t.Context(), []byte("FROM busybox\nWORKDIR /w\nCOPY . .\nRUN make\n"),
			Options{NoCache: noCache, Resolver: &fakeResolver{}, Platform: testPlatform})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		if err := llb.Walk(res.State.Vertex(), func(v *llb.Vertex) error {
			n++
			if v.Meta().IgnoreCache != noCache {
				t.Errorf("NoCache=%v: vertex %q has IgnoreCache=%v", noCache, v.Meta().Description, v.Meta().IgnoreCache)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n != 5 { // image, mkdir, local context, copy, run
			t.Errorf("walked %d vertices, want 5", n)
		}
	}
}

func TestConvertMetadata(t *testing.T) {
	df := []byte("FROM busybox AS build\n\nRUN echo one \\\n  two\nCOPY a /a\n")
	res, err := Convert(t.Context(), df, Options{Filename: "examples/x/Dockerfile", ContextName: "ctx",
		Resolver: &fakeResolver{}, Platform: testPlatform})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]llb.Meta{}
	var locals []string
	if err := llb.Walk(res.State.Vertex(), func(v *llb.Vertex) error {
		if src, ok := v.Op().(*llb.SourceOp); ok && strings.HasPrefix(src.Identifier, llb.LocalScheme) {
			locals = append(locals, src.Identifier)
			return nil
		}
		got[v.Op().Kind()] = v.Meta()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	pinned := "docker.io/library/busybox:latest@" + digest.FromString("busybox:latest").String()
	want := map[string]llb.Meta{
		"source": {Description: "[1/3] FROM " + pinned, Location: &llb.SourceLocation{File: "examples/x/Dockerfile", StartLine: 1, EndLine: 1}},
		"exec":   {Description: "[2/3] RUN echo one   two", Location: &llb.SourceLocation{File: "examples/x/Dockerfile", StartLine: 3, EndLine: 4}},
		"file":   {Description: "[3/3] COPY a /a", Location: &llb.SourceLocation{File: "examples/x/Dockerfile", StartLine: 5, EndLine: 5}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("vertex metadata (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"local://ctx"}, locals); diff != "" {
		t.Errorf("local sources (-want +got):\n%s", diff)
	}
}

func TestErrorFormat(t *testing.T) {
	inner := errors.New("stage \"nope\" not found")
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{name: "with instruction", err: &Error{File: "Dockerfile", Line: 5, Instruction: "COPY --from=nope", Err: inner},
			want: `Dockerfile:5: COPY --from=nope: stage "nope" not found`},
		{name: "without instruction", err: &Error{File: "a/Dockerfile", Line: 3, Err: inner},
			want: `a/Dockerfile:3: stage "nope" not found`},
		{name: "without line", err: &Error{File: "Dockerfile", Err: inner}, want: `Dockerfile: stage "nope" not found`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
			if !errors.Is(tc.err, inner) {
				t.Error("errors.Is does not reach the wrapped error")
			}
		})
	}
}

func TestConvertErrorFields(t *testing.T) {
	_, err := Convert(t.Context(), []byte("FROM busybox\nRUN --device=nvidia.com/gpu=all \\\n  make\n"),
		Options{Resolver: &fakeResolver{}, Platform: testPlatform})
	var fe *Error
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v (%T), want *Error", err, err)
	}
	want := Error{File: "Dockerfile", Line: 2, EndLine: 3, Instruction: "RUN --device", Err: errNotSupported}
	if diff := cmp.Diff(want, *fe, cmpopts.EquateErrors()); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
}

func TestDestPath(t *testing.T) {
	tests := []struct{ wd, dest, want string }{
		{"/", "/app/", "/app/"},
		{"/", "/app", "/app"},
		{"/work", ".", "/work/"},
		{"/work", "", "/work/"},
		{"/work", "sub/", "/work/sub/"},
		{"/work", "../x", "/x"},
		{"/work", "/", "/"},
		{"/", ".", "/"},
		{"/work", "a/.", "/work/a/"},
	}
	for _, tc := range tests {
		if got := destPath(tc.wd, tc.dest); got != tc.want {
			t.Errorf("destPath(%q, %q) = %q, want %q", tc.wd, tc.dest, got, tc.want)
		}
	}
}

func TestParsePort(t *testing.T) {
	tests := []struct {
		spec    string
		want    []string
		wantErr bool
	}{
		{spec: "80", want: []string{"80/tcp"}},
		{spec: "53/UDP", want: []string{"53/udp"}},
		{spec: "8000-8002/tcp", want: []string{"8000/tcp", "8001/tcp", "8002/tcp"}},
		{spec: "127.0.0.1:8080:80", want: []string{"80/tcp"}},
		{spec: "http", wantErr: true},
		{spec: "80/icmp", wantErr: true},
		{spec: "90-80", wantErr: true},
		{spec: "70000", wantErr: true},
	}
	for _, tc := range tests {
		got, err := parsePort(tc.spec)
		if (err != nil) != tc.wantErr {
			t.Errorf("parsePort(%q) error = %v, wantErr %v", tc.spec, err, tc.wantErr)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("parsePort(%q) (-want +got):\n%s", tc.spec, diff)
		}
	}
}

func BenchmarkConvert(b *testing.B) {
	df, err := os.ReadFile(filepath.Join("testdata", "multistage-copy-from", "Dockerfile"))
	if err != nil {
		b.Fatal(err)
	}
	opt := Options{Resolver: &fakeResolver{}, Platform: testPlatform}
	for b.Loop() {
		if _, err := Convert(b.Context(), df, opt); err != nil {
			b.Fatal(err)
		}
	}
}
