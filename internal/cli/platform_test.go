package cli

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/builderdev/builder/frontend/dockerfile"
	"github.com/builderdev/builder/frontend/platform"
	"github.com/builderdev/builder/worker/emulation"
)

var (
	linuxAMD64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	linuxARM64 = ocispec.Platform{OS: "linux", Architecture: "arm64"}
)

func TestParsePlatforms(t *testing.T) {
	t.Parallel()
	got, err := parsePlatforms(nil)
	if err != nil || len(got) != 1 || !platform.Equal(got[0], platform.Host()) {
		t.Errorf("parsePlatforms(nil) = %v, %v; want the host", got, err)
	}
	got, err = parsePlatforms([]string{"linux/amd64,linux/arm64", "linux/arm64/v8"})
	if err != nil {
		t.Fatal(err)
	}
	if s := formatPlatforms(got); s != "linux/amd64,linux/arm64" {
		t.Errorf("parsePlatforms = %s", s)
	}
	if _, err := parsePlatforms([]string{"linux/amd64,linux"}); err != nil {
		t.Errorf("a lone os: %v", err)
	}
	if _, err := parsePlatforms([]string{"linux/amd64/v2/x"}); err == nil || !strings.HasPrefix(err.Error(), "--platform: ") {
		t.Errorf("malformed platform: error = %v", err)
	}
}

func TestCheckPlatformOutputs(t *testing.T) {
	t.Parallel()
	two := []ocispec.Platform{linuxAMD64, linuxARM64}
	one := []ocispec.Platform{linuxARM64}
	out := func(spec string) Output {
		o, err := parseOutput(spec)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	for _, tc := range []struct {
		name      string
		platforms []ocispec.Platform
		tags      []string
		outputs   []Output
		want      string
	}{
		{name: "one platform, tag", platforms: one, tags: []string{"app"}},
		{name: "one platform, docker", platforms: one, outputs: []Output{out("type=docker,dest=x")}},
		{name: "one platform, index annotation", platforms: one, outputs: []Output{out("type=oci,dest=x,annotation-index.a=1")}, want: "index annotations not supported for single platform export"},
		{name: "oci", platforms: two, outputs: []Output{out("type=oci,dest=x"), out("type=local,dest=y"), out("type=tar,dest=z")}},
		{name: "push", platforms: two, outputs: []Output{out("type=image,name=r/a,push=true"), out("type=registry,name=r/b")}},
		{name: "tag", platforms: two, tags: []string{"app"}, want: "-t app: the local image store cannot hold a multi-platform image (--platform linux/amd64,linux/arm64)"},
		{name: "docker", platforms: two, outputs: []Output{out("type=docker,dest=x")}, want: "--output type=docker: a docker archive cannot hold a multi-platform image"},
		{name: "image without push", platforms: two, outputs: []Output{out("type=image,name=r/a")}, want: "without push=true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := checkPlatformOutputs(tc.platforms, tc.tags, tc.outputs)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("checkPlatformOutputs: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("checkPlatformOutputs error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// lowerFor lowers df (which must not need an image resolver) for each platform.
func lowerFor(t *testing.T, df string, ps ...ocispec.Platform) []*platformBuild {
	t.Helper()
	var out []*platformBuild
	for _, p := range ps {
		fe, err := dockerfile.Convert(t.Context(), []byte(df), dockerfile.Options{Platform: p, BuildPlatform: platform.Host()})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &platformBuild{platform: p, fe: fe, out: fe.State.Vertex()})
	}
	return out
}

func TestCheckEmulation(t *testing.T) {
	if !platform.Equal(platform.Host(), linuxAMD64) {
		t.Skip("the cases assume an amd64 host")
	}
	t.Parallel()
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "status"), []byte("enabled\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withQemu := t.TempDir()
	for name, body := range map[string]string{
		"status":       "enabled\n",
		"qemu-aarch64": "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n",
	} {
		if err := os.WriteFile(filepath.Join(withQemu, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cross := "FROM --platform=$BUILDPLATFORM scratch AS build\nCOPY a /a\nRUN build\n\nFROM scratch\nCOPY --from=build /a /a\nRUN \\\n  test\nRUN later\n"
	for _, tc := range []struct {
		name      string
		df        string
		platforms []ocispec.Platform
		dir       string
		want      string // "" for no error
		line      int
	}{
		{name: "native", df: cross, platforms: []ocispec.Platform{linuxAMD64}, dir: empty},
		{name: "foreign without qemu", df: cross, platforms: []ocispec.Platform{linuxAMD64, linuxARM64}, dir: empty, line: 7,
			want: "Dockerfile:7: RUN test: running linux/arm64 programs on this linux/amd64 host needs emulation: no binfmt_misc handler qemu-aarch64 is registered; install qemu-user-static (apt-get install qemu-user-static) to run linux/arm64 steps on this linux/amd64 host"},
		{name: "foreign with qemu", df: cross, platforms: []ocispec.Platform{linuxARM64}, dir: withQemu},
		{name: "no RUN needs no emulation", df: "FROM scratch\nCOPY a /a\n", platforms: []ocispec.Platform{linuxARM64}, dir: empty},
		{name: "only the build stage runs", df: "FROM --platform=$BUILDPLATFORM scratch AS build\nRUN make\nFROM scratch\nCOPY --from=build /a /a\n", platforms: []ocispec.Platform{linuxARM64}, dir: empty},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := checkEmulation(lowerFor(t, tc.df, tc.platforms...), tc.dir)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("checkEmulation: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("checkEmulation error:\n%v\nwant:\n%s", err, tc.want)
			}
			var fe *dockerfile.Error
			if !errors.As(err, &fe) || fe.Line != tc.line || !errors.Is(err, emulation.ErrUnavailable) {
				t.Errorf("error %#v: want a *dockerfile.Error at line %d wrapping ErrUnavailable", err, tc.line)
			}
			if se := withSource(err, []byte(tc.df)); !strings.Contains(se.Error(), ">>>") {
				t.Errorf("withSource shows no excerpt:\n%v", se)
			}
		})
	}
}

func TestPrefixedTar(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := prefixedTar(t.Context(), tw, "linux_arm64/", func(w io.Writer) error {
		inner := tar.NewWriter(w)
		for _, h := range []*tar.Header{
			{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: 2},
			{Name: "bin/sh", Typeflag: tar.TypeLink, Linkname: "bin/busybox"},
			{Name: "bin/ls", Typeflag: tar.TypeSymlink, Linkname: "busybox"},
		} {
			if err := inner.WriteHeader(h); err != nil {
				return err
			}
			if h.Size > 0 {
				if _, err := inner.Write([]byte("bb")); err != nil {
					return err
				}
			}
		}
		return inner.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Name+" -> "+h.Linkname)
	}
	want := []string{"linux_arm64/bin/ -> ", "linux_arm64/bin/busybox -> ", "linux_arm64/bin/sh -> linux_arm64/bin/busybox", "linux_arm64/bin/ls -> busybox"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	// A failing writer fails the copy.
	boom := errors.New("boom")
	if err := prefixedTar(t.Context(), tar.NewWriter(io.Discard), "p/", func(io.Writer) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("prefixedTar with a failing writer = %v, want %v", err, boom)
	}
}
