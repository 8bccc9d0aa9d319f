package dockerfile

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/builderdev/builder/frontend/platform"
	"github.com/builderdev/builder/llb"
)

var (
	amd64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = ocispec.Platform{OS: "linux", Architecture: "arm64"}
)

// crossDockerfile is the usual cross-compiling shape: a builder stage on the build
// platform, its output copied into a stage for the target platform.
const crossDockerfile = `FROM --platform=$BUILDPLATFORM golang AS build
ARG TARGETARCH BUILDARCH
RUN echo $TARGETARCH $BUILDARCH > /out

FROM busybox
COPY --from=build /out /out
COPY --from=alpine /etc/os-release /
RUN cat /out
`

// runsByLine maps the start line of each RUN vertex to the platform it runs for.
func runsByLine(t *testing.T, res *Result) map[int]string {
	t.Helper()
	out := map[int]string{}
	for _, v := range vertices(t, res.State)["exec"] {
		p, ok := res.RunPlatforms[v.Digest()]
		if !ok {
			t.Errorf("RUN %q has no platform", v.Meta().Description)
			continue
		}
		out[v.Meta().Location.StartLine] = platform.Format(p)
	}
	return out
}

func TestFromPlatformLowering(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		target    ocispec.Platform
		resolved  []string
		runs      map[int]string
		buildEnv  string // TARGETARCH and BUILDARCH as the builder stage's RUN sees them
		imageArch string
	}{
		{
			name:   "cross to arm64",
			target: arm64,
			// The builder's base for the build platform, the rest for the target.
			resolved:  []string{"alpine linux/arm64", "busybox linux/arm64", "golang linux/amd64"},
			runs:      map[int]string{3: "linux/amd64", 8: "linux/arm64"},
			buildEnv:  "TARGETARCH=arm64 BUILDARCH=amd64",
			imageArch: "arm64",
		},
		{
			name:      "native",
			target:    amd64,
			resolved:  []string{"alpine linux/amd64", "busybox linux/amd64", "golang linux/amd64"},
			runs:      map[int]string{3: "linux/amd64", 8: "linux/amd64"},
			buildEnv:  "TARGETARCH=amd64 BUILDARCH=amd64",
			imageArch: "amd64",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := &fakeResolver{}
			res, err := Convert(t.Context(), []byte(crossDockerfile), Options{Resolver: r, Platform: tc.target, BuildPlatform: amd64})
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, res)
			if diff := cmp.Diff(tc.resolved, r.Resolved()); diff != "" {
				t.Errorf("resolutions (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.runs, runsByLine(t, res)); diff != "" {
				t.Errorf("RUN platforms by line (-want +got):\n%s", diff)
			}
			if res.Image.Architecture != tc.imageArch || res.Image.OS != "linux" {
				t.Errorf("image platform %s/%s, want linux/%s", res.Image.OS, res.Image.Architecture, tc.imageArch)
			}
			var env []string
			for _, v := range vertices(t, res.State)["exec"] {
				if v.Meta().Location.StartLine == 3 {
					env = v.Op().(*llb.ExecOp).Env
				}
			}
			for _, kv := range strings.Fields(tc.buildEnv) {
				if !strings.Contains(strings.Join(env, " "), kv) {
					t.Errorf("builder RUN env %v lacks %s", env, kv)
				}
			}
		})
	}
}

// TestFromPlatformPerTarget lowers one Dockerfile for two targets, as a multi-platform
// build does: the builder stage is the same graph for both (so one solve can share
// it), the target stages differ by their base image's digest.
func TestFromPlatformPerTarget(t *testing.T) {
	t.Parallel()
	df := "FROM --platform=$BUILDPLATFORM golang AS build\nRUN make\n\nFROM busybox\nCOPY --from=build /out /out\n"
	var builds, finals []string
	for _, p := range []ocispec.Platform{amd64, arm64} {
		res, err := Convert(t.Context(), []byte(df), Options{Resolver: &fakeResolver{}, Platform: p, BuildPlatform: amd64, MultiPlatform: true})
		if err != nil {
			t.Fatal(err)
		}
		vs := vertices(t, res.State)
		builds = append(builds, string(vs["exec"][0].Digest()))
		finals = append(finals, string(res.State.Vertex().Digest()))
		var descs []string
		for _, kind := range []string{"source", "exec", "file"} {
			for _, v := range vs[kind] {
				descs = append(descs, v.Meta().Description)
			}
		}
		// BuildKit's prefix for several platforms: each stage's own platform.
		want := []string{
			"[linux/amd64 build 1/2] FROM docker.io/library/golang:latest@",
			"[" + platform.Format(p) + " stage-1 1/2] FROM docker.io/library/busybox:latest@",
			"[linux/amd64 build 2/2] RUN make",
			"[" + platform.Format(p) + " stage-1 2/2] COPY --from=build /out /out",
		}
		for _, w := range want {
			found := false
			for _, d := range descs {
				found = found || strings.HasPrefix(d, w)
			}
			if !found {
				t.Errorf("%s: no description starts with %q; have %q", platform.Format(p), w, descs)
			}
		}
	}
	if builds[0] != builds[1] {
		t.Errorf("the build-platform stage differs between targets: %v", builds)
	}
	if finals[0] == finals[1] {
		t.Error("the target stages of amd64 and arm64 are the same vertex")
	}
}

// TestBaseImagePlatformWarning: a base image whose config says another platform than
// the stage's is reported with BuildKit's InvalidBaseImagePlatform rule.
func TestBaseImagePlatformWarning(t *testing.T) {
	t.Parallel()
	var warnings []string
	warn := func(file string, line int, msg string) { warnings = append(warnings, msg) }
	// digestResolver returns the amd64 busybox config for every platform.
	_, err := Convert(t.Context(), []byte("FROM busybox\nRUN true\n"), Options{Resolver: &digestResolver{}, Platform: arm64, BuildPlatform: amd64, Warn: warn})
	if err != nil {
		t.Fatal(err)
	}
	want := `InvalidBaseImagePlatform: Base image busybox was pulled with platform "linux/amd64", expected "linux/arm64" for current build`
	if len(warnings) != 1 || warnings[0] != want {
		t.Errorf("warnings = %q, want [%q]", warnings, want)
	}
	warnings = nil
	if _, err := Convert(t.Context(), []byte("FROM busybox\n"), Options{Resolver: &digestResolver{}, Platform: amd64, BuildPlatform: amd64, Warn: warn}); err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("native build warned: %q", warnings)
	}
}

func TestConvertPlatformDefaults(t *testing.T) {
	t.Parallel()
	res, err := Convert(t.Context(), []byte("FROM scratch\nARG TARGETPLATFORM BUILDPLATFORM\nENV T=$TARGETPLATFORM B=$BUILDPLATFORM\n"),
		Options{Resolver: &fakeResolver{}, Platform: ocispec.Platform{OS: "linux", Architecture: "aarch64", Variant: "v8"}, BuildPlatform: amd64})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"PATH=" + defaultPathEnv, "T=linux/arm64", "B=linux/amd64"}, res.Image.Config.Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	if res.Image.Architecture != "arm64" || res.Image.Variant != "" {
		t.Errorf("image platform %s/%s, want the normalised linux/arm64", res.Image.Architecture, res.Image.Variant)
	}
	if _, err := Convert(t.Context(), []byte("FROM scratch\n"), Options{Platform: ocispec.Platform{OS: "linux"}}); err == nil {
		t.Error("Convert accepted a platform without architecture")
	}
}
