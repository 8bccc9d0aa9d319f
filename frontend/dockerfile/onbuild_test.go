package dockerfile

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/google/go-cmp/cmp"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
)

// triggerResolver serves images whose config has ONBUILD triggers: "onbuild:N" has
// triggers[N]; other references go to fakeResolver.
type triggerResolver struct {
	fakeResolver
	triggers [][]string
}

func (r *triggerResolver) ResolveImageConfig(ctx context.Context, ref string, p ocispec.Platform) (string, []byte, error) {
	rest, ok := strings.CutPrefix(ref, "onbuild:")
	n, err := strconv.Atoi(rest)
	if !ok || err != nil {
		return r.fakeResolver.ResolveImageConfig(ctx, ref, p)
	}
	r.mu.Lock()
	r.calls = append(r.calls, ref)
	r.mu.Unlock()
	var img dockerspec.DockerOCIImage
	if err := json.Unmarshal([]byte(busyboxConfig), &img); err != nil {
		return "", nil, err
	}
	img.Config.OnBuild = r.triggers[n]
	dt, err := json.Marshal(img)
	return "docker.io/library/" + ref + "@sha256:" + strings.Repeat("0", 64), dt, err
}

func TestOnbuildFromImage(t *testing.T) {
	r := &triggerResolver{triggers: [][]string{{
		"RUN echo from image",
		"COPY --from=helper /h /h",
		"COPY --from=alpine:3.19 /etc/os-release /os",
		"ENV TRIGGERED=1",
	}}}
	df := `FROM busybox AS helper
RUN echo helper > /h

FROM onbuild:0 AS child
RUN echo child

FROM child
RUN echo grandchild
`
	res, err := convertString(t, df, Options{Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	// alpine:3.19 is only known from the image's trigger: a second resolution round.
	if diff := cmp.Diff([]string{"alpine:3.19", "busybox", "onbuild:0"}, r.Calls()); diff != "" {
		t.Errorf("resolver calls (-want +got):\n%s", diff)
	}
	var hist []string
	for _, h := range res.Image.History {
		hist = append(hist, h.CreatedBy)
	}
	want := []string{
		"BusyBox 1.37.0 (glibc), Debian 12", `CMD ["sh"]`,
		"RUN /bin/sh -c echo from image # buildkit",
		"COPY /h /h # buildkit",
		"COPY /etc/os-release /os # buildkit",
		"ENV TRIGGERED=1",
		"RUN /bin/sh -c echo child # buildkit",
		// The grandchild does not run the triggers again.
		"RUN /bin/sh -c echo grandchild # buildkit",
	}
	if diff := cmp.Diff(want, hist); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	if res.DockerConfig.OnBuild != nil {
		t.Errorf("triggers passed on: %q", res.DockerConfig.OnBuild)
	}
	checkResult(t, res)
}

func TestOnbuildRecordedNotRun(t *testing.T) {
	res, err := convertString(t, "FROM busybox\nONBUILD RUN echo later\nONBUILD COPY --from=nosuch / /\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"RUN echo later", "COPY --from=nosuch / /"}
	if diff := cmp.Diff(want, res.DockerConfig.OnBuild); diff != "" {
		t.Errorf("OnBuild (-want +got):\n%s", diff)
	}
	if len(vertices(t, res.State)["exec"]) != 0 {
		t.Error("a trigger ran in the stage that declares it")
	}
}

func TestOnbuildErrors(t *testing.T) {
	tests := []struct {
		name     string
		triggers []string
		df       string
		want     string
	}{
		{name: "FROM in an image trigger", triggers: []string{"FROM alpine"}, df: "FROM busybox\n\nFROM onbuild:0\n",
			want: `Dockerfile:3: FROM onbuild:0: ONBUILD trigger "FROM alpine": FROM isn't allowed as an ONBUILD trigger`},
		{name: "unknown instruction", triggers: []string{"RUNN true"}, df: "FROM onbuild:0\n",
			want: `Dockerfile:1: FROM onbuild:0: ONBUILD trigger "RUNN true": unknown instruction: RUNN`},
		{name: "two instructions", triggers: []string{"RUN a\nRUN b"}, df: "FROM onbuild:0\n",
			want: `Dockerfile:1: FROM onbuild:0: ONBUILD trigger "RUN a\nRUN b": a trigger must be a single instruction`},
		{name: "failing trigger names itself", triggers: []string{"COPY --chmod=9 a /a"}, df: "FROM busybox\nFROM onbuild:0\nRUN true\n",
			want: `Dockerfile:2: FROM onbuild:0: ONBUILD trigger "COPY --chmod=9 a /a": COPY --chmod=9: invalid chmod parameter`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := convertString(t, tc.df, Options{Resolver: &triggerResolver{triggers: [][]string{tc.triggers}}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v\nwant %s", err, tc.want)
			}
			if _, ok := err.(*Error); !ok {
				t.Errorf("error %T is not an *Error", err)
			}
		})
	}
}

func TestOnbuildOfReplacedStage(t *testing.T) {
	// A stage replaced by a named context gives its children the context image's
	// triggers, not the replaced instructions'.
	r := &triggerResolver{triggers: [][]string{{"ENV FROM_CONTEXT=1"}}}
	df := "FROM busybox AS base\nONBUILD ENV FROM_STAGE=1\nFROM base\n"
	res, err := convertString(t, df, Options{Resolver: r, NamedContexts: map[string]string{"base": "docker-image://onbuild:0"}})
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Join(res.Image.Config.Env, " ")
	if !strings.Contains(env, "FROM_CONTEXT=1") || strings.Contains(env, "FROM_STAGE") {
		t.Errorf("env %q: want the context's trigger only", env)
	}
}
