//go:build linux

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestConformanceDocker runs the conformance cases through Docker's BuildKit to prove
// their expectations: with BUILDER_CONFORMANCE_DOCKER=1 it starts a private dockerd
// (Debian's docker.io) and builds every case with DOCKER_BUILDKIT=1 docker build, then
// checks the saved image exactly as TestConformance checks the builder's. Cases that
// need a newer Dockerfile frontend than docker.io embeds say "docker: skip REASON".
func TestConformanceDocker(t *testing.T) {
	if os.Getenv("BUILDER_CONFORMANCE_DOCKER") != "1" {
		t.Skip("set BUILDER_CONFORMANCE_DOCKER=1 to check the expectations with Docker's BuildKit")
	}
	for _, tool := range []string{"/usr/bin/docker", "dockerd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install docker.io)", tool)
		}
	}
	d := startDockerd(t)
	env := newConfEnv(t)
	env.runAll(t, d)
}

// dockerBackend builds with a dockerd the test started, through /usr/bin/docker:
// docker.io's 20.10 client, which drives BuildKit itself (a newer docker on PATH would
// want the buildx plugin).
type dockerBackend struct {
	env []string // DOCKER_HOST and DOCKER_CONFIG of the private daemon
	seq *atomic.Int64
}

// startDockerd runs dockerd on a private socket, data root and exec root (no iptables,
// no bridge: builds use the host network) and stops exactly that process at the end.
func startDockerd(t *testing.T) dockerBackend {
	t.Helper()
	// Not t.TempDir: if the daemon leaves a mount behind, removing the directory fails
	// and that is no failure of a case.
	dir, err := os.MkdirTemp("", "builder-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "docker.sock")
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"), "-H", "unix://"+sock)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dockerd: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		os.RemoveAll(dir)
	})
	d := dockerBackend{
		env: []string{"DOCKER_HOST=unix://" + sock, "DOCKER_CONFIG=" + filepath.Join(dir, "config"), "DOCKER_BUILDKIT=1"},
		seq: &atomic.Int64{},
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if r := runConfTool(nil, d.env, "/usr/bin/docker", "version"); r.err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("dockerd did not start:\n%s", log)
		}
	}
	return d
}

func (d dockerBackend) build(t *testing.T, _ string, args []string, stdin []byte, env []string, ctxDir, out string) result {
	tag := "conformance/case:" + strconv.FormatInt(d.seq.Add(1), 10)
	full := []string{"build", "--progress=plain", "-t", tag}
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--network") }) {
		// The daemon runs without a bridge; the builder's default is the host network.
		full = append(full, "--network=host")
	}
	full = append(full, args...)
	r := runConfTool(stdin, append(d.env, env...), "/usr/bin/docker", append(full, ctxDir)...)
	if r.err != nil {
		return r
	}
	archive := out + ".docker.tar"
	if s := runConfTool(nil, d.env, "/usr/bin/docker", "save", "-o", archive, tag); s.err != nil {
		return s
	}
	if s := runConfTool(nil, nil, "skopeo", "copy", "docker-archive:"+archive, "oci:"+out+":case"); s.err != nil {
		return s
	}
	// skopeo's conversion to OCI drops what only Docker's config has (Healthcheck,
	// OnBuild, Shell): the checks read the config as docker saved it.
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatalf("reading %s: %v", archive, err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatalf("reading the config in %s: %v", archive, err)
	}
	if err := os.WriteFile(out+configSuffix, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

func (d dockerBackend) push(t *testing.T, _ string, ctxDir, ref string) result {
	r := runConfTool(nil, d.env, "/usr/bin/docker", "build", "--progress=plain", "--network=host", "-t", ref, ctxDir)
	if r.err != nil {
		return r
	}
	return runConfTool(nil, d.env, "/usr/bin/docker", "push", ref)
}

func (dockerBackend) skip(c *confCase) string {
	if c.dockerSkip != "" {
		return "docker: " + c.dockerSkip
	}
	return ""
}
