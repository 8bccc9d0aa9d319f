//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// startAuthRegistry runs a second docker-registry, this one wanting user:password
// (htpasswd, bcrypt), and returns its host:port. It is stopped by its pid at cleanup.
func startAuthRegistry(t *testing.T, user, password string) string {
	t.Helper()
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	cfg := filepath.Join(dir, "registry.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: %s}}
http: {addr: %s}
auth: {htpasswd: {realm: builder-test, path: %s}}
`, filepath.Join(dir, "data"), host, htpasswd)), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	cmd := exec.Command("docker-registry", "serve", cfg)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting docker-registry: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return host
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry with htpasswd did not answer on %s: %s", host, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// builderEnv runs the binary with extra environment and standard input.
func builderEnv(t *testing.T, env []string, stdin string, root string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, builderBin, append([]string{"--root", root}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return result{out.String(), errb.String(), err}
}

func TestRegistryLoginPushPull(t *testing.T) {
	host := startAuthRegistry(t, "ci", "s3cret")
	env := []string{"DOCKER_CONFIG=" + t.TempDir()}
	root := newRoot(t)
	must := func(r result, what string) result {
		t.Helper()
		if r.err != nil {
			t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", what, r.err, r.stdout, r.stderr)
		}
		return r
	}

	// A wrong password is refused by the registry and nothing is stored.
	r := builderEnv(t, env, "wrong\n", root, "login", "-u", "ci", "--password-stdin", host)
	if want := "logging in to " + host + ": unauthorized: incorrect username or password"; r.err == nil || !strings.Contains(r.stderr, want) {
		t.Fatalf("login with a wrong password: %v\n%s\nwant %q", r.err, r.combined(), want)
	}
	r = must(builderEnv(t, env, "s3cret\n", root, "login", "-u", "ci", "--password-stdin", host), "login")
	if !strings.Contains(r.stdout, "Login Succeeded") {
		t.Errorf("login printed %q", r.stdout)
	}

	ctxDir := writeContext(t, map[string]string{
		"Dockerfile": "FROM {{BASE}}\nCOPY hello.txt /hello.txt\n",
		"hello.txt":  "hello registry\n",
	})
	ref := host + "/team/app:1"
	must(builderEnv(t, env, "", root, "build", "--progress=plain", "-t", ref, ctxDir), "build")
	r = must(builderEnv(t, env, "", root, "push", ref), "push")
	pushed := strings.Fields(r.stdout)
	if len(pushed) < 3 || pushed[1] != "digest:" {
		t.Fatalf("push printed %q, want REF: digest: D size: N", r.stdout)
	}
	digest := pushed[2]

	// Read back with skopeo and the same credentials.
	out, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "--creds", "ci:s3cret", "docker://"+ref).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	var info struct{ Digest string }
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("skopeo inspect output: %v\n%s", err, out)
	}
	if info.Digest != digest {
		t.Errorf("skopeo sees %s, builder pushed %s", info.Digest, digest)
	}

	// Another repository of the same registry: the blobs are mounted, the image is whole.
	copyRef := host + "/other/app:1"
	must(builderEnv(t, env, "", root, "push", ref, copyRef), "push to a second repository")
	out, err = exec.Command("skopeo", "inspect", "--tls-verify=false", "--creds", "ci:s3cret", "docker://"+copyRef).CombinedOutput()
	if err != nil || !strings.Contains(string(out), digest) {
		t.Errorf("skopeo inspect %s: %v\n%s", copyRef, err, out)
	}

	// Pull into an empty root; builder images lists it.
	root2 := newRoot(t)
	r = must(builderEnv(t, env, "", root2, "pull", copyRef), "pull")
	if !strings.Contains(r.stdout, "Digest: "+digest) {
		t.Errorf("pull printed %q, want digest %s", r.stdout, digest)
	}
	r = must(builderEnv(t, env, "", root2, "images"), "images")
	if !strings.Contains(r.stdout, host+"/other/app") {
		t.Errorf("images after pull:\n%s", r.stdout)
	}

	// Logged out, a push fails and says what to do.
	r = must(builderEnv(t, env, "", root, "logout", host), "logout")
	if !strings.Contains(r.stdout, "Removing login credentials for "+host) {
		t.Errorf("logout printed %q", r.stdout)
	}
	r = builderEnv(t, env, "", root, "push", ref, host+"/team/app:2")
	want := "pushing " + host + "/team/app:2: unauthorized: authentication required (run builder login " + host + ")"
	if r.err == nil || !strings.Contains(r.stderr, want) {
		t.Errorf("push after logout: %v\n%s\nwant %q", r.err, r.combined(), want)
	}
	r = builderEnv(t, env, "", root2, "pull", host+"/team/app:1")
	want = "pulling " + host + "/team/app:1: unauthorized: authentication required (run builder login " + host + ")"
	if r.err == nil || !strings.Contains(r.stderr, want) {
		t.Errorf("pull after logout: %v\n%s\nwant %q", r.err, r.combined(), want)
	}
}

// TestPullFromHarnessRegistry pulls the harness's base image by tag and by digest.
func TestPullFromHarnessRegistry(t *testing.T) {
	root := newRoot(t)
	r := mustBuilder(t, root, "pull", baseImage)
	fields := strings.Fields(r.stdout)
	if len(fields) < 2 || fields[0] != "Digest:" {
		t.Fatalf("pull printed %q", r.stdout)
	}
	byDigest := strings.TrimSuffix(baseImage, ":latest") + "@" + fields[1]
	mustBuilder(t, root, "pull", byDigest)
	images := mustBuilder(t, root, "images").stdout
	if !strings.Contains(images, strings.TrimSuffix(baseImage, ":latest")) {
		t.Errorf("images does not list %s:\n%s", baseImage, images)
	}
	r = builder(t, root, "pull", registry+"/does-not-exist:1")
	if want := "pulling " + registry + "/does-not-exist:1: not found"; r.err == nil || !strings.Contains(r.stderr, want) {
		t.Errorf("pull of a missing image: %v\n%s\nwant %q", r.err, r.combined(), want)
	}
}
