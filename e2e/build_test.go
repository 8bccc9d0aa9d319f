//go:build linux

package e2e

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const multiStage = `# multi-stage: writes, deletes (whiteouts) and recreated directories (opaque)
FROM {{BASE}} AS build
RUN mkdir -p /data/keep /data/gone /data/redo \
 && echo keep > /data/keep/f && echo bye > /data/gone/f \
 && echo old > /data/redo/old && echo x > /data/remove-me
WORKDIR /src
COPY hello.txt ./
RUN echo built > out.txt && chmod 0750 out.txt && chown 1000:1000 out.txt

FROM {{BASE}} AS other
RUN echo other > /other.txt

FROM build
RUN rm -rf /data/gone /data/remove-me /data/redo && mkdir /data/redo && echo new > /data/redo/new
COPY --from=other /other.txt /copied/other.txt
ENV GREETING=hi
CMD ["cat", "/src/out.txt"]
`

func TestMultiStageExportsAndConsumers(t *testing.T) {
	root := newRoot(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": multiStage, "hello.txt": "hello\n"})
	out := t.TempDir()
	pushRef := registry + "/e2e/multistage:1"
	mustBuilder(t, root, "build", "--progress=plain", "-t", "multistage:1",
		"--output", "type=docker,dest="+filepath.Join(out, "image.tar"),
		"--output", "type=oci,dest="+filepath.Join(out, "oci.tar"),
		"--output", "type=oci,tar=false,dest="+filepath.Join(out, "layout"),
		"--output", "type=image,name="+pushRef+",push=true",
		ctxDir)

	images := mustBuilder(t, root, "images")
	if !strings.Contains(images.stdout, "multistage") || !strings.Contains(images.stdout, "1") {
		t.Errorf("builder images does not list multistage:1:\n%s", images.stdout)
	}

	// skopeo reads both archives.
	for _, src := range []string{"docker-archive:" + filepath.Join(out, "image.tar"), "oci-archive:" + filepath.Join(out, "oci.tar")} {
		cmd := exec.Command("skopeo", "inspect", src)
		dt, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo inspect %s: %v\n%s", src, err, dt)
		}
		var info struct{ Layers []string }
		if err := json.Unmarshal(dt, &info); err != nil {
			t.Fatalf("skopeo inspect %s output: %v", src, err)
		}
		// base + RUN + WORKDIR? + COPY + RUN + RUN + COPY: at least the base and 4 steps.
		if len(info.Layers) < 5 {
			t.Errorf("skopeo inspect %s: %d layers, want at least 5", src, len(info.Layers))
		}
	}

	// skopeo copies the docker archive into an OCI layout: the whole tarball is readable.
	copied := filepath.Join(t.TempDir(), "copied")
	if dt, err := exec.Command("skopeo", "copy", "docker-archive:"+filepath.Join(out, "image.tar"), "oci:"+copied+":copy").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy docker-archive: %v\n%s", err, dt)
	}

	// umoci unpacks the OCI layout; the result has the right content, modes, owners and deletions.
	bundle := filepath.Join(t.TempDir(), "bundle")
	if dt, err := exec.Command("umoci", "unpack", "--image", filepath.Join(out, "layout")+":1", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, dt)
	}
	rootfs := filepath.Join(bundle, "rootfs")
	for _, c := range []struct {
		path    string
		content string // "" = must be absent
	}{
		{"data/keep/f", "keep\n"},
		{"data/gone", ""},
		{"data/remove-me", ""},
		{"data/redo/old", ""},
		{"data/redo/new", "new\n"},
		{"src/hello.txt", "hello\n"},
		{"src/out.txt", "built\n"},
		{"copied/other.txt", "other\n"},
		{"other.txt", ""},
	} {
		dt, err := os.ReadFile(filepath.Join(rootfs, c.path))
		switch {
		case c.content == "" && !errors.Is(err, os.ErrNotExist):
			t.Errorf("%s exists in the unpacked image, want it deleted/absent", c.path)
		case c.content != "" && err != nil:
			t.Errorf("%s: %v", c.path, err)
		case c.content != "" && string(dt) != c.content:
			t.Errorf("%s = %q, want %q", c.path, dt, c.content)
		}
	}
	fi, err := os.Stat(filepath.Join(rootfs, "src/out.txt"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o750 || st.Uid != 1000 || st.Gid != 1000 {
		t.Errorf("src/out.txt mode %v owner %d:%d, want -rwxr-x--- 1000:1000", fi.Mode().Perm(), st.Uid, st.Gid)
	}
	var rc struct {
		Process struct {
			Args []string `json:"args"`
			Env  []string `json:"env"`
			Cwd  string   `json:"cwd"`
		} `json:"process"`
	}
	dt, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(dt, &rc); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rc.Process.Args, []string{"cat", "/src/out.txt"}) || rc.Process.Cwd != "/src" || !slices.Contains(rc.Process.Env, "GREETING=hi") {
		t.Errorf("runtime config from the image: args %q cwd %q env %q", rc.Process.Args, rc.Process.Cwd, rc.Process.Env)
	}

	// The layers themselves carry OCI whiteouts and an opaque marker.
	img, err := tarball.ImageFromPath(filepath.Join(out, "image.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	entries := layerEntries(t, img)
	for _, want := range []string{"data/.wh.gone", "data/.wh.remove-me", "data/redo/.wh..wh..opq"} {
		if !entries[want] {
			t.Errorf("no layer has entry %s", want)
		}
	}

	// The pushed image pulls back with the same layers as the exported one.
	ref, err := name.ParseReference(pushRef, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pulling back %s: %v", pushRef, err)
	}
	if a, b := layerDigests(t, pulled), layerDigests(t, img); !slices.Equal(a, b) {
		t.Errorf("pushed layers %v differ from exported %v", a, b)
	}
	if dt, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "docker://"+pushRef).CombinedOutput(); err != nil {
		t.Errorf("skopeo inspect of the pushed image: %v\n%s", err, dt)
	}
}

func layerEntries(t *testing.T, img v1.Image) map[string]bool {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, l := range ls {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			names[strings.TrimPrefix(h.Name, "./")] = true
		}
		rc.Close()
	}
	return names
}

func layerDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}

const cacheDockerfile = `FROM {{BASE}}
COPY a.txt /a.txt
RUN cat /a.txt > /a.copy
COPY b.txt /b.txt
RUN cat /b.txt > /b.copy
CMD ["cat", "/b.copy"]
`

// stepStatus maps each step's description (e.g. "RUN cat /a.txt > /a.copy") to how it
// ended in plain progress output: DONE, CACHED or ERROR.
func stepStatus(t *testing.T, plain string) map[string]string {
	t.Helper()
	names := map[string]string{}
	out := map[string]string{}
	start := regexp.MustCompile(`^#(\d+) (?:\[[^\]]*\] )?(.*)$`)
	end := regexp.MustCompile(`^#(\d+) (DONE|CACHED|ERROR)`)
	for _, l := range strings.Split(plain, "\n") {
		if m := end.FindStringSubmatch(l); m != nil {
			out[names[m[1]]] = m[2]
			continue
		}
		if m := start.FindStringSubmatch(l); m != nil {
			if _, seen := names[m[1]]; !seen {
				names[m[1]] = m[2]
			}
		}
	}
	return out
}

func TestCacheHitsAndInvalidation(t *testing.T) {
	root := newRoot(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": cacheDockerfile, "a.txt": "a1\n", "b.txt": "b1\n", "unused.txt": "u1\n"})
	first := mustBuilder(t, root, "build", "--progress=plain", "-t", "cachetest", ctxDir)
	st := stepStatus(t, first.stderr)
	for _, step := range []string{"RUN cat /a.txt > /a.copy", "RUN cat /b.txt > /b.copy"} {
		if st[step] != "DONE" {
			t.Fatalf("first build: %q ended %q, want DONE; progress:\n%s", step, st[step], first.stderr)
		}
	}
	snaps := countFiles(t, filepath.Join(root, "snapshots"))
	blobs := countFiles(t, filepath.Join(root, "content", "blobs"))
	records := countFiles(t, filepath.Join(root, "cache"))

	// An identical build runs nothing and writes no new layer.
	second := mustBuilder(t, root, "build", "--progress=plain", "-t", "cachetest", ctxDir)
	st = stepStatus(t, second.stderr)
	for _, step := range []string{"COPY a.txt /a.txt", "RUN cat /a.txt > /a.copy", "COPY b.txt /b.txt", "RUN cat /b.txt > /b.copy"} {
		if st[step] != "CACHED" {
			t.Errorf("second build: %q ended %q, want CACHED; progress:\n%s", step, st[step], second.stderr)
		}
	}
	if n := countFiles(t, filepath.Join(root, "snapshots")); n != snaps {
		t.Errorf("second build changed the snapshot files: %d → %d", snaps, n)
	}
	if n := countFiles(t, filepath.Join(root, "cache")); n != records {
		t.Errorf("second build wrote cache records: %d → %d", records, n)
	}
	// The image takes its times from the cached results: same image, no new blob.
	if n := countFiles(t, filepath.Join(root, "content", "blobs")); n != blobs {
		t.Errorf("second build wrote %d new blobs, want none", n-blobs)
	}
	if a, b := builtID(t, first.stderr), builtID(t, second.stderr); a != b {
		t.Errorf("identical cached rebuild made image %s, first build %s", b, a)
	}

	// A file no step reads changes nothing.
	if err := os.WriteFile(filepath.Join(ctxDir, "unused.txt"), []byte("u2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	third := mustBuilder(t, root, "build", "--progress=plain", ctxDir)
	if st := stepStatus(t, third.stderr); st["RUN cat /b.txt > /b.copy"] != "CACHED" {
		t.Errorf("changing an unread file re-ran steps:\n%s", third.stderr)
	}

	// Changing b.txt re-runs only what follows the COPY that reads it.
	if err := os.WriteFile(filepath.Join(ctxDir, "b.txt"), []byte("b2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fourth := mustBuilder(t, root, "build", "--progress=plain", "-t", "cachetest", ctxDir)
	st = stepStatus(t, fourth.stderr)
	want := map[string]string{
		"COPY a.txt /a.txt":        "CACHED",
		"RUN cat /a.txt > /a.copy": "CACHED",
		"COPY b.txt /b.txt":        "DONE",
		"RUN cat /b.txt > /b.copy": "DONE",
	}
	for step, w := range want {
		if st[step] != w {
			t.Errorf("after changing b.txt: %q ended %q, want %q; progress:\n%s", step, st[step], w, fourth.stderr)
		}
	}
}

// builtID returns the image id from the "built sha256:... in" line of the progress.
func builtID(t *testing.T, progress string) string {
	t.Helper()
	m := regexp.MustCompile(`built (sha256:[0-9a-f]{64})`).FindStringSubmatch(progress)
	if m == nil {
		t.Fatalf("no image id in the progress output:\n%s", progress)
	}
	return m[1]
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name       string
		dockerfile string
		args       []string
		want       []string // substrings of the error output
	}{
		{"unknown instruction", "FROM {{BASE}}\nRUNN echo hi\n", nil, []string{"Dockerfile:2", "RUNN"}},
		{"copy of a missing file", "FROM {{BASE}}\nCOPY missing.txt /x\n", nil, []string{"Dockerfile:2", "missing.txt"}},
		{"run exits 1", "FROM {{BASE}}\nRUN echo about to fail && exit 1\n", nil, []string{"Dockerfile:2", "exit code: 1", "about to fail", "RUN echo about to fail"}},
		{"unknown target", "FROM {{BASE}} AS one\nRUN true\n", []string{"--target", "nope"}, []string{"nope"}},
		{"unreachable registry", "FROM 127.0.0.1:1/nothing:latest\nRUN true\n", nil, []string{"Dockerfile:1", "127.0.0.1:1/nothing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newRoot(t)
			ctxDir := writeContext(t, map[string]string{"Dockerfile": tc.dockerfile})
			outDir := t.TempDir()
			args := append([]string{"build", "--progress=plain", "--output", "type=docker,dest=" + filepath.Join(outDir, "out.tar")}, tc.args...)
			r := builder(t, root, append(args, ctxDir)...)
			if r.err == nil {
				t.Fatalf("build succeeded, want an error; output:\n%s", r.combined())
			}
			if ee := (*exec.ExitError)(nil); !errors.As(r.err, &ee) || ee.ExitCode() == 0 {
				t.Errorf("exit status %v, want non-zero exit", r.err)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("error output lacks %q:\n%s", w, r.stderr)
				}
			}
			if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") {
				t.Errorf("builder panicked:\n%s", r.stderr)
			}
			if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
				t.Errorf("failed build left %d files in the output directory (%s)", len(ents), ents[0].Name())
			}
		})
	}
}

func TestPrintLLB(t *testing.T) {
	root := newRoot(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": cacheDockerfile, "a.txt": "a", "b.txt": "b"})
	r := mustBuilder(t, root, "build", "--print-llb", ctxDir)
	var def struct {
		Vertices []struct {
			Kind string `json:"kind"`
			Meta struct {
				Location *struct{ StartLine int } `json:"location"`
			} `json:"meta"`
		} `json:"vertices"`
		Output string `json:"output"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &def); err != nil {
		t.Fatalf("--print-llb output is not JSON: %v\n%s", err, r.stdout)
	}
	kinds := map[string]int{}
	for _, v := range def.Vertices {
		kinds[v.Kind]++
	}
	if kinds["exec"] != 2 || kinds["file"] != 2 || kinds["source"] != 2 {
		t.Errorf("vertex kinds %v, want 2 exec, 2 file, 2 source (image, context)", kinds)
	}
	if def.Output == "" {
		t.Error("no output vertex")
	}
	if n := countFiles(t, filepath.Join(root, "snapshots")); n != 0 {
		t.Errorf("--print-llb ran steps: %d snapshot files", n)
	}
}
