//go:build linux

package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// reproDockerfile has RUN steps that write files (their mtimes are the build's
// time), COPY of context files and WORKDIR: everything whose bytes would carry a
// timestamp. RUN sees SOURCE_DATE_EPOCH once the stage declares it.
const reproDockerfile = `FROM {{BASE}}
ARG SOURCE_DATE_EPOCH
RUN mkdir -p /out/dir && echo built > /out/dir/file && ln -s dir/file /out/link \
 && echo "epoch=$SOURCE_DATE_EPOCH" > /out/epoch
WORKDIR /work
COPY src/ ./src/
COPY top.txt /top.txt
RUN rm /out/dir/file && echo changed > /out/changed
ENV MODE=repro
CMD ["cat", "/top.txt"]
`

// reproBuild builds the repro context on a fresh root and returns the metadata file
// and the OCI archive's bytes.
func reproBuild(t *testing.T, ctxDir string, env []string, args ...string) (map[string]any, []byte) {
	t.Helper()
	root := newRoot(t)
	out := t.TempDir()
	md := filepath.Join(out, "metadata.json")
	archive := filepath.Join(out, "oci.tar")
	argv := append([]string{"build", "--progress=plain", "--metadata-file", md,
		"--output", "type=oci,dest=" + archive + ",name=repro:1"}, args...)
	r := builderIO(t, root, env, nil, append(argv, ctxDir)...)
	if r.err != nil {
		t.Fatalf("build: %v\n%s", r.err, r.stderr)
	}
	dt, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(dt, &m); err != nil {
		t.Fatal(err)
	}
	tarball, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	return m, tarball
}

// TestReproducibleBuild: with SOURCE_DATE_EPOCH (from the environment on one root,
// from --build-arg on the other) two builds of the same inputs at different times
// on two empty roots give the same image digest and byte-identical OCI archives.
// Without it the digests differ: the test compares what it claims to.
func TestReproducibleBuild(t *testing.T) {
	ctxDir := writeContext(t, map[string]string{
		"Dockerfile":   reproDockerfile,
		"src/a.go":     "package a\n",
		"src/sub/b.go": "package sub\n",
		"top.txt":      "top\n",
	})
	const epoch = "1700000000"
	md1, tar1 := reproBuild(t, ctxDir, []string{"SOURCE_DATE_EPOCH=" + epoch})
	// The second build runs in a later second, so unclamped times would differ; its
	// context files are touched too.
	time.Sleep(1100 * time.Millisecond)
	now := time.Now()
	for _, p := range []string{"src/a.go", "src/sub/b.go", "top.txt"} {
		if err := os.Chtimes(filepath.Join(ctxDir, p), now, now); err != nil {
			t.Fatal(err)
		}
	}
	md2, tar2 := reproBuild(t, ctxDir, nil, "--build-arg", "SOURCE_DATE_EPOCH="+epoch)

	d1, d2 := md1["containerimage.digest"], md2["containerimage.digest"]
	if d1 == nil || d1 != d2 {
		t.Errorf("image digests differ with SOURCE_DATE_EPOCH: %v vs %v", d1, d2)
	}
	if !bytes.Equal(tar1, tar2) {
		t.Errorf("OCI archives differ with SOURCE_DATE_EPOCH (%d vs %d bytes)", len(tar1), len(tar2))
	}

	// What the epoch did: created times are the epoch, RUN saw the variable.
	archive := filepath.Join(t.TempDir(), "oci.tar")
	if err := os.WriteFile(archive, tar1, 0o644); err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Created string `json:"created"`
		History []struct {
			Created string `json:"created"`
		} `json:"history"`
	}
	if err := json.Unmarshal(tool(t, "skopeo", "inspect", "--raw", "--config", "oci-archive:"+archive+":1"), &cfg); err != nil {
		t.Fatal(err)
	}
	const want = "2023-11-14T22:13:20Z"
	if cfg.Created != want {
		t.Errorf("config created = %s, want %s", cfg.Created, want)
	}
	for i, h := range cfg.History {
		if h.Created > want {
			t.Errorf("history[%d] created %s is after the epoch", i, h.Created)
		}
	}
	bundle := filepath.Join(t.TempDir(), "bundle")
	layout := filepath.Join(t.TempDir(), "layout")
	tool(t, "skopeo", "copy", "-q", "oci-archive:"+archive+":1", "oci:"+layout+":1")
	tool(t, "umoci", "unpack", "--image", layout+":1", bundle)
	if dt, err := os.ReadFile(filepath.Join(bundle, "rootfs/out/epoch")); err != nil || string(dt) != "epoch="+epoch+"\n" {
		t.Errorf("RUN saw %q (%v), want epoch=%s", dt, err, epoch)
	}
	fi, err := os.Lstat(filepath.Join(bundle, "rootfs/out/changed"))
	if err != nil || !fi.ModTime().Equal(time.Unix(1700000000, 0)) {
		t.Errorf("file made by RUN: mtime %v (%v), want the epoch", fi.ModTime(), err)
	}

	// Without an epoch the same two builds differ (their creation times do).
	md3, _ := reproBuild(t, ctxDir, nil)
	time.Sleep(1100 * time.Millisecond)
	md4, _ := reproBuild(t, ctxDir, nil)
	if md3["containerimage.digest"] == md4["containerimage.digest"] {
		t.Errorf("builds without SOURCE_DATE_EPOCH at different times have the same digest %v", md3["containerimage.digest"])
	}
	if md3["containerimage.digest"] == d1 {
		t.Error("the build without an epoch has the epoch build's digest")
	}
	if md3["containerimage.config.digest"] == md1["containerimage.config.digest"] {
		t.Error("config digests equal with and without an epoch")
	}
}
