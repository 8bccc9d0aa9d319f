//go:build linux

package e2e

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Multi-platform builds (--platform linux/amd64,linux/arm64). The arm64 half needs
// Debian's arm64 busybox-static package and qemu-user-static registered with
// binfmt_misc, both of which scripts/install-deps.sh sets up:
//
//   - BUILDER_TEST_ARM64_BUSYBOX_DEB names the .deb; by default it is
//     /var/cache/builder-test/busybox-static_arm64.deb, where install-deps.sh puts it.
//   - /proc/sys/fs/binfmt_misc/qemu-aarch64 must be enabled.
//
// The test without emulation simulates a host lacking qemu by pointing builder's check
// at an empty binfmt_misc directory with BUILDER_BINFMT_DIR.

const defaultArm64BusyboxDeb = "/var/cache/builder-test/busybox-static_arm64.deb"

var (
	multiBaseOnce sync.Once
	multiBase     string // REGISTRY/mpbusybox:1, an index of amd64 and arm64 busybox
	multiBaseErr  error
)

// requireArm64 skips unless the arm64 busybox package and qemu-aarch64 are there, and
// returns the package's path.
func requireArm64(t *testing.T) string {
	t.Helper()
	deb := os.Getenv("BUILDER_TEST_ARM64_BUSYBOX_DEB")
	if deb == "" {
		deb = defaultArm64BusyboxDeb
	}
	if _, err := os.Stat(deb); err != nil {
		t.Skipf("no arm64 busybox package at %s (scripts/install-deps.sh downloads it; or set BUILDER_TEST_ARM64_BUSYBOX_DEB)", deb)
	}
	st, err := os.ReadFile("/proc/sys/fs/binfmt_misc/qemu-aarch64")
	if err != nil || !strings.HasPrefix(string(st), "enabled") {
		t.Skip("qemu-aarch64 is not registered with binfmt_misc (apt-get install qemu-user-static binfmt-support)")
	}
	return deb
}

// busyboxTree writes a root filesystem of busybox (the binary at bb) with the applets
// the tests use, as symlinks.
func busyboxTree(t *testing.T, dir, bb string) {
	t.Helper()
	for _, d := range []string{"bin", "etc", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dt, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), dt, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "uname", "cat", "echo", "ls", "mkdir", "true", "test", "cp"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
}

// multiPlatformBase builds, with builder itself, a two-platform busybox (FROM scratch,
// each platform copying its own busybox: no RUN, so no emulation) and pushes the index
// to the test registry, once per test binary.
func multiPlatformBase(t *testing.T) string {
	t.Helper()
	deb := requireArm64(t)
	multiBaseOnce.Do(func() {
		multiBaseErr = func() error {
			work, err := os.MkdirTemp("", "builder-e2e-mpbase-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(work)
			if out, err := exec.Command("dpkg-deb", "-x", deb, filepath.Join(work, "deb")).CombinedOutput(); err != nil {
				return errors.New("dpkg-deb -x " + deb + ": " + err.Error() + "\n" + string(out))
			}
			ctxDir := filepath.Join(work, "ctx")
			busyboxTree(t, filepath.Join(ctxDir, "rootfs-amd64"), "/bin/busybox")
			busyboxTree(t, filepath.Join(ctxDir, "rootfs-arm64"), filepath.Join(work, "deb", "bin", "busybox"))
			df := "FROM scratch\nARG TARGETARCH\nCOPY rootfs-$TARGETARCH/ /\nENV PATH=/bin\nCMD [\"sh\"]\n"
			if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(df), 0o644); err != nil {
				return err
			}
			ref := registry + "/mpbusybox:1"
			r := builder(t, filepath.Join(work, "root"), "build", "--platform", "linux/amd64,linux/arm64",
				"--output", "type=registry,name="+ref, ctxDir)
			if r.err != nil {
				return errors.New("building the base: " + r.err.Error() + "\n" + r.combined())
			}
			multiBase = ref
			return nil
		}()
	})
	if multiBaseErr != nil {
		t.Fatal(multiBaseErr)
	}
	return multiBase
}

// layoutFile reads path from the top layer of the image in the OCI layout at dir.
func layoutFile(t *testing.T, img v1.Image, path string) string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[len(layers)-1].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	zr, err := gzip.NewReader(rc)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s not in the top layer", path)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == path {
			dt, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return string(dt)
		}
	}
}

// TestPlatformRunEmulated builds FROM a two-platform base with RUN uname -m for both
// platforms: the arm64 RUN goes through qemu. Checked in the OCI layout (an index of
// one manifest per platform), in a registry push and in a local output (a directory
// per platform).
func TestPlatformRunEmulated(t *testing.T) {
	base := multiPlatformBase(t)
	root := newRoot(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM " + base + "\nRUN uname -m > /arch\n"})
	out := t.TempDir()
	layoutDir := filepath.Join(out, "layout")
	ref := registry + "/mpapp:1"
	mustBuilder(t, root, "build", "--platform", "linux/amd64", "--platform", "linux/arm64",
		"--output", "type=oci,dest="+layoutDir+",tar=false,name=mpapp:1",
		"--output", "type=local,dest="+filepath.Join(out, "fs"),
		"--output", "type=registry,name="+ref,
		"--metadata-file", filepath.Join(out, "md.json"), "--iidfile", filepath.Join(out, "iid"), ctxDir)

	p, err := layout.FromPath(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	tm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Manifests) != 1 || tm.Manifests[0].MediaType != types.OCIImageIndex {
		t.Fatalf("index.json = %+v, want one image index entry", tm.Manifests)
	}
	idxDigest := tm.Manifests[0].Digest
	idx, err := top.ImageIndex(idxDigest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"linux/amd64": "x86_64\n", "linux/arm64": "aarch64\n"}
	got := map[string]string{}
	for _, d := range im.Manifests {
		if d.Platform == nil {
			t.Fatalf("manifest %s has no platform", d.Digest)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != d.Platform.Architecture || cf.OS != "linux" {
			t.Errorf("%s: config says %s/%s", d.Platform.String(), cf.OS, cf.Architecture)
		}
		got[d.Platform.String()] = layoutFile(t, img, "arch")
	}
	if len(got) != 2 || got["linux/amd64"] != want["linux/amd64"] || got["linux/arm64"] != want["linux/arm64"] {
		t.Errorf("uname -m per platform = %q, want %q", got, want)
	}

	// umoci unpacks each platform's image: it picks images by tag only, so a copy of
	// index.json tags each platform's manifest (the blobs are the same).
	var tagged v1.IndexManifest
	tagged.SchemaVersion, tagged.MediaType = 2, types.OCIImageIndex
	for _, d := range im.Manifests {
		d.Annotations = map[string]string{"org.opencontainers.image.ref.name": d.Platform.Architecture}
		tagged.Manifests = append(tagged.Manifests, d)
	}
	dt, err := json.Marshal(tagged)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(layoutDir, "index.json"), dt, 0o644); err != nil {
		t.Fatal(err)
	}
	for plat, arch := range want {
		bundle := filepath.Join(t.TempDir(), "bundle")
		tag := strings.TrimPrefix(plat, "linux/")
		if out, err := exec.Command("umoci", "unpack", "--image", layoutDir+":"+tag, bundle).CombinedOutput(); err != nil {
			t.Fatalf("umoci unpack %s: %v\n%s", plat, err, out)
		}
		if dt, err := os.ReadFile(filepath.Join(bundle, "rootfs", "arch")); err != nil || string(dt) != arch {
			t.Errorf("umoci %s: /arch = %q, %v; want %q", plat, dt, err, arch)
		}
	}

	for plat, arch := range want {
		dt, err := os.ReadFile(filepath.Join(out, "fs", strings.ReplaceAll(plat, "/", "_"), "arch"))
		if err != nil || string(dt) != arch {
			t.Errorf("local output %s: /arch = %q, %v; want %q", plat, dt, err, arch)
		}
	}

	var md map[string]any
	dt, err = os.ReadFile(filepath.Join(out, "md.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(dt, &md); err != nil {
		t.Fatal(err)
	}
	if md["containerimage.digest"] != idxDigest.String() {
		t.Errorf("metadata containerimage.digest = %v, want the index %s", md["containerimage.digest"], idxDigest)
	}
	if _, ok := md["containerimage.config.digest"]; ok {
		t.Errorf("metadata of a multi-platform build has a config digest: %s", dt)
	}
	if iid, _ := os.ReadFile(filepath.Join(out, "iid")); string(iid) != idxDigest.String() {
		t.Errorf("--iidfile = %q, want the index digest %s", iid, idxDigest)
	}

	// The registry has the same index; skopeo picks each platform.
	_, pushed := inspectRaw(t, "docker://"+ref, "--tls-verify=false")
	if pushed != idxDigest.String() {
		t.Errorf("pushed index %s, want %s", pushed, idxDigest)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		var info struct{ Architecture string }
		raw := tool(t, "skopeo", "--override-os", "linux", "--override-arch", arch, "inspect", "--tls-verify=false", "docker://"+ref)
		if err := json.Unmarshal(raw, &info); err != nil || info.Architecture != arch {
			t.Errorf("skopeo (%s) sees architecture %q, %v", arch, info.Architecture, err)
		}
	}

	// A single foreign platform is a plain image, as before: no index.
	single := filepath.Join(out, "single.tar")
	mustBuilder(t, root, "build", "--platform", "linux/arm64", "--output", "type=oci,dest="+single, ctxDir)
	raw := tool(t, "tar", "-xOf", single, "index.json")
	var sm v1.IndexManifest
	if err := json.Unmarshal(raw, &sm); err != nil {
		t.Fatal(err)
	}
	if len(sm.Manifests) != 1 || !sm.Manifests[0].MediaType.IsImage() || sm.Manifests[0].Platform == nil || sm.Manifests[0].Platform.Architecture != "arm64" {
		t.Errorf("single-platform index.json = %s", raw)
	}
}

// TestPlatformCrossStage is the cross-compiling shape: a stage on $BUILDPLATFORM makes
// something for $TARGETARCH, the target stage copies it and runs on its own platform.
func TestPlatformCrossStage(t *testing.T) {
	base := multiPlatformBase(t)
	root := newRoot(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": `FROM --platform=$BUILDPLATFORM ` + base + ` AS build
RUN uname -m > /host
ARG TARGETARCH
RUN echo "built on $(cat /host) for $TARGETARCH" > /out

FROM ` + base + `
COPY --from=build /out /out
RUN cat /out > /result && uname -m >> /result
`})
	out := t.TempDir()
	r := mustBuilder(t, root, "build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64",
		"--output", "type=tar,dest="+filepath.Join(out, "fs.tar"), ctxDir)
	got := map[string]string{}
	f, err := os.Open(filepath.Join(out, "fs.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(h.Name, "/result") {
			dt, _ := io.ReadAll(tr)
			got[h.Name] = string(dt)
		}
	}
	want := map[string]string{
		"linux_amd64/result": "built on x86_64 for amd64\nx86_64\n",
		"linux_arm64/result": "built on x86_64 for arm64\naarch64\n",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (all: %q)", k, got[k], v, got)
		}
	}
	// Progress names each step's platform; the build stage is linux/amd64 for both.
	for _, s := range []string{"[linux/amd64 build 2/3] RUN uname -m > /host", "[linux/arm64 stage-1 3/3] RUN cat /out"} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("progress lacks %q:\n%s", s, r.stderr)
		}
	}
}

// TestPlatformWithoutEmulation: without qemu registered, a build whose arm64 stage has
// a RUN fails before anything runs, naming the line, the platform and the fix; the
// stages that need no emulation (COPY only, or RUN on the build platform) still build.
func TestPlatformWithoutEmulation(t *testing.T) {
	if goarch() != "amd64" {
		t.Skip("the messages assume an amd64 host")
	}
	fakeBinfmt := t.TempDir()
	if err := os.WriteFile(filepath.Join(fakeBinfmt, "status"), []byte("enabled\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"BUILDER_BINFMT_DIR=" + fakeBinfmt}
	root := newRoot(t)
	ctxDir := writeContext(t, map[string]string{
		"Dockerfile": "FROM {{BASE}}\nCOPY hello /hello\nRUN echo ran > /ran\n",
		"hello":      "hi\n",
	})
	dest := filepath.Join(t.TempDir(), "out.tar")
	r := builderEnv(t, env, "", root, "build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "--output", "type=oci,dest="+dest, ctxDir)
	if r.err == nil {
		t.Fatalf("build succeeded without emulation:\n%s", r.combined())
	}
	for _, s := range []string{
		"Dockerfile:3: RUN echo ran > /ran: running linux/arm64 programs on this linux/amd64 host needs emulation",
		"no binfmt_misc handler qemu-aarch64 is registered",
		"install qemu-user-static (apt-get install qemu-user-static) to run linux/arm64 steps on this linux/amd64 host",
		">>> RUN echo ran > /ran",
	} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("error lacks %q:\n%s", s, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "#1 ") {
		t.Errorf("steps ran before the emulation check:\n%s", r.stderr)
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("output written despite the error: %v", err)
	}

	// No RUN for arm64: nothing to emulate (the base's arm64 image is the amd64
	// busybox here, which is fine for a COPY-only stage).
	copyOnly := writeContext(t, map[string]string{
		"Dockerfile": "FROM --platform=$BUILDPLATFORM {{BASE}} AS build\nRUN echo built > /built\nFROM scratch\nCOPY --from=build /built /built\n",
	})
	mustBuilderEnv(t, env, root, "build", "--platform", "linux/amd64,linux/arm64", "--output", "type=oci,dest="+dest, copyOnly)
}

func mustBuilderEnv(t *testing.T, env []string, root string, args ...string) result {
	t.Helper()
	r := builderEnv(t, env, "", root, args...)
	if r.err != nil {
		t.Fatalf("builder %s: %v\n%s", strings.Join(args, " "), r.err, r.combined())
	}
	return r
}

// TestPlatformOutputErrors: outputs that cannot hold a multi-platform image are
// refused before building.
func TestPlatformOutputErrors(t *testing.T) {
	root := newRoot(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN echo never > /x\n"})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-t", "app:1"}, "the local image store cannot hold a multi-platform image"},
		{[]string{"--output", "type=docker,dest=" + filepath.Join(t.TempDir(), "x.tar")}, "a docker archive cannot hold a multi-platform image"},
		{[]string{"--output", "type=image,name=" + registry + "/x:1"}, "without push=true"},
		{[]string{"--platform", "linux/"}, `--platform: platform "linux/": want os/arch[/variant]`},
	} {
		args := append([]string{"build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64"}, tc.args...)
		r := builder(t, root, append(args, ctxDir)...)
		if r.err == nil || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("builder %s: err %v, want an error containing %q:\n%s", strings.Join(tc.args, " "), r.err, tc.want, r.stderr)
		}
		if strings.Contains(r.stderr, "#1 ") {
			t.Errorf("builder %s built something before failing:\n%s", strings.Join(tc.args, " "), r.stderr)
		}
	}
}
