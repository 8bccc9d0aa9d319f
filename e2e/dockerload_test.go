//go:build linux

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDockerLoadsOurImages hands builder's docker-save output to a real Docker engine
// (Debian's docker.io, started privately by the test and stopped by pid) and back:
// docker load, docker run, docker save, then builder load and builder run.
func TestDockerLoadsOurImages(t *testing.T) {
	for _, tool := range []string{"dockerd", "/usr/bin/docker"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (apt-get install docker.io); scripts/install-deps.sh installs it", tool)
		}
	}
	d := startDockerd(t)
	root := newRoot(t)
	work := t.TempDir()
	ctxDir := writeContext(t, map[string]string{
		"Dockerfile": "FROM " + baseImage + "\n" +
			"RUN mkdir -p /app && echo one > /app/gone && echo kept > /app/kept\n" +
			"COPY msg.txt /app/msg.txt\n" +
			"RUN rm /app/gone\n" +
			"CMD [\"sh\", \"-c\", \"cat /app/msg.txt /app/kept; test ! -e /app/gone && echo whiteout-ok\"]\n",
		"msg.txt": "hello from builder\n",
	})
	tarball := filepath.Join(work, "img.tar")
	iid := filepath.Join(work, "iid")
	mustBuilder(t, root, "build", "--progress=plain", "-t", "loadtest:1", "--iidfile", iid,
		"--output", "type=docker,dest="+tarball, ctxDir)
	wantID, err := os.ReadFile(iid)
	if err != nil {
		t.Fatal(err)
	}

	docker := func(args ...string) string {
		t.Helper()
		r := runConfTool(nil, d.env, "/usr/bin/docker", args...)
		if r.err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), r.err, r.combined())
		}
		return r.stdout
	}
	if out := docker("load", "-i", tarball); !strings.Contains(out, "loadtest:1") {
		t.Fatalf("docker load did not name the image:\n%s", out)
	}
	if got := strings.TrimSpace(docker("image", "inspect", "-f", "{{.Id}}", "loadtest:1")); got != strings.TrimSpace(string(wantID)) {
		t.Errorf("docker sees id %s, builder wrote %s", got, wantID)
	}
	want := "hello from builder\nkept\nwhiteout-ok\n"
	if got := docker("run", "--rm", "--network", "none", "loadtest:1"); got != want {
		t.Errorf("docker run printed %q, want %q", got, want)
	}

	// And back: what docker saves, builder loads and runs.
	saved := filepath.Join(work, "saved.tar")
	docker("save", "-o", saved, "loadtest:1")
	fresh := newRoot(t)
	if out := mustBuilder(t, fresh, "load", "-i", saved).combined(); !strings.Contains(out, "loadtest:1") {
		t.Fatalf("builder load did not name the image:\n%s", out)
	}
	if got := mustBuilder(t, fresh, "run", "loadtest:1").stdout; got != want {
		t.Errorf("builder run of docker's save printed %q, want %q", got, want)
	}
}
