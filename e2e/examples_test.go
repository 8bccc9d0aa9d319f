//go:build linux

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExamples builds the examples the way `make demo` does: the busybox base from
// Debian's busybox-static, pushed to the registry, then helloworld on top of it; the
// result is unpacked by umoci and its CMD run by runc, a consumer we did not write.
func TestExamples(t *testing.T) {
	for _, tool := range []string{"runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (apt-get install %s)", tool, tool)
		}
	}
	root := newRoot(t)
	repo, err := filepath.Abs("../examples")
	if err != nil {
		t.Fatal(err)
	}
	bbCtx := filepath.Join(t.TempDir(), "busybox")
	if dt, err := exec.Command("cp", "-r", filepath.Join(repo, "busybox"), bbCtx).CombinedOutput(); err != nil {
		t.Fatalf("copying example: %v\n%s", err, dt)
	}
	if dt, err := exec.Command(filepath.Join(bbCtx, "make-rootfs.sh"), filepath.Join(bbCtx, "rootfs")).CombinedOutput(); err != nil {
		t.Fatalf("make-rootfs.sh: %v\n%s", err, dt)
	}
	base := registry + "/examples/busybox:latest"
	mustBuilder(t, root, "build", "--progress=plain", "--output", "type=image,name="+base+",push=true", bbCtx)

	layout := filepath.Join(t.TempDir(), "layout")
	mustBuilder(t, root, "build", "--progress=plain", "-t", "helloworld", "--build-arg", "BASE="+base,
		"--output", "type=oci,tar=false,dest="+layout, filepath.Join(repo, "helloworld"))

	bundle := filepath.Join(t.TempDir(), "bundle")
	if dt, err := exec.Command("umoci", "unpack", "--image", layout+":latest", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, dt)
	}
	// runc needs no terminal for a captured run.
	cfgPath := filepath.Join(bundle, "config.json")
	dt, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(dt, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["process"].(map[string]any)["terminal"] = false
	dt, _ = json.Marshal(cfg)
	if err := os.WriteFile(cfgPath, dt, 0o644); err != nil {
		t.Fatal(err)
	}
	id := "builder-e2e-" + filepath.Base(filepath.Dir(bundle))
	cmd := exec.Command("runc", "--root", filepath.Join(t.TempDir(), "runc"), "run", "-b", bundle, id)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("runc run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Hello, world!") || !strings.Contains(string(out), "built by builder") {
		t.Errorf("helloworld printed %q, want the greeting", out)
	}
}
