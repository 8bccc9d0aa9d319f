package registry

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// fakeHelper puts a docker-credential-test program on PATH. It answers get for
// server with user me / password secret (and "not found" for anything else), and
// records what store and erase receive in dir/stored and dir/erased.
func fakeHelper(t *testing.T, server string) (dir string) {
	t.Helper()
	dir = t.TempDir()
	script := fmt.Sprintf(`#!/bin/sh
input=$(cat)
case "$1" in
get)
	if [ "$input" = %q ]; then
		printf '{"ServerURL":"%%s","Username":"me","Secret":"secret"}' "$input"
	else
		echo "credentials not found in native keychain"
		exit 1
	fi ;;
store) printf '%%s' "$input" > %q ;;
erase) printf '%%s' "$input" > %q ;;
*) exit 1 ;;
esac
`, server, filepath.Join(dir, "stored"), filepath.Join(dir, "erased"))
	if err := os.WriteFile(filepath.Join(dir, "docker-credential-test"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return dir
}

func writeDockerConfig(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if content != "" {
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func basicAuth(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

func TestDockerKeychain(t *testing.T) {
	reg := newTestRegistry(t)
	reg.setHook(requireBasicAuth("me", "secret"))
	fakeHelper(t, reg.host)
	img, _ := random.Image(64, 1)

	tests := []struct {
		name    string
		config  string
		wantErr error
	}{
		{name: "auths", config: `{"auths":{"HOST":{"auth":"` + basicAuth("me", "secret") + `"}}}`},
		{name: "auths with url key", config: `{"auths":{"http://HOST":{"auth":"` + basicAuth("me", "secret") + `"}}}`},
		{name: "auths wrong password", config: `{"auths":{"HOST":{"auth":"` + basicAuth("me", "nope") + `"}}}`, wantErr: ErrUnauthorized},
		{name: "credHelpers", config: `{"credHelpers":{"HOST":"test"}}`},
		{name: "credsStore", config: `{"credsStore":"test"}`},
		{name: "credHelpers wins over auths", config: `{"credHelpers":{"HOST":"test"},"auths":{"HOST":{"auth":"` + basicAuth("me", "nope") + `"}}}`},
		{name: "other registry only", config: `{"auths":{"example.com":{"auth":"` + basicAuth("me", "secret") + `"}}}`, wantErr: ErrUnauthorized},
		{name: "no config file", wantErr: ErrUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeDockerConfig(t, strings.ReplaceAll(tc.config, "HOST", reg.host))
			c, _ := newClient(t, t.TempDir(), WithKeychain(DockerKeychain(dir)))
			err := c.Push(t.Context(), reg.host+"/private:v1", img)
			if tc.wantErr == nil && err != nil {
				t.Fatalf("Push = %v", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Push = %v, want %v", err, tc.wantErr)
			}
		})
	}

	t.Run("DOCKER_CONFIG is the default", func(t *testing.T) {
		dir := writeDockerConfig(t, `{"auths":{"`+reg.host+`":{"auth":"`+basicAuth("me", "secret")+`"}}}`)
		t.Setenv("DOCKER_CONFIG", dir)
		c, _ := newClient(t, t.TempDir())
		if _, err := c.Pull(t.Context(), reg.host+"/private:v1"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestKeychainDockerHubKey(t *testing.T) {
	dir := writeDockerConfig(t, `{"auths":{"https://index.docker.io/v1/":{"auth":"`+basicAuth("hub", "pw")+`"}}}`)
	repo, _ := name.NewRepository("docker.io/library/busybox")
	a, err := DockerKeychain(dir).Resolve(repo)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := a.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Username != "hub" || cfg.Password != "pw" {
		t.Errorf("Docker Hub credentials = %s/%s, want hub/pw", cfg.Username, cfg.Password)
	}
}

func TestServerKey(t *testing.T) {
	tests := []struct{ in, host, key string }{
		{"127.0.0.1:5000", "127.0.0.1:5000", "127.0.0.1:5000"},
		{"https://ghcr.io/", "ghcr.io", "ghcr.io"},
		{"http://reg.local:5000/v2/", "reg.local:5000", "reg.local:5000"},
		{"docker.io", "index.docker.io", "https://index.docker.io/v1/"},
		{"https://index.docker.io/v1/", "index.docker.io", "https://index.docker.io/v1/"},
		{"registry-1.docker.io", "index.docker.io", "https://index.docker.io/v1/"},
		{"", "", ""},
		{"has space:5000", "", ""},
	}
	for _, tc := range tests {
		host, key, err := ServerKey(tc.in)
		if tc.host == "" {
			if err == nil {
				t.Errorf("ServerKey(%q) = %q, %q; want error", tc.in, host, key)
			}
			continue
		}
		if err != nil || host != tc.host || key != tc.key {
			t.Errorf("ServerKey(%q) = %q, %q, %v; want %q, %q", tc.in, host, key, err, tc.host, tc.key)
		}
	}
}

func TestSaveAndRemoveLogin(t *testing.T) {
	const existing = `{
	"auths": {"other.example": {"auth": "b3RoZXI6cHc="}},
	"psFormat": "table {{.ID}}",
	"proxies": {"default": {"httpProxy": "http://proxy:3128"}},
	"x-unknown": [1, 2, 3]
}`
	dir := writeDockerConfig(t, existing)
	p := filepath.Join(dir, "config.json")
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SaveLogin(dir, "https://127.0.0.1:5000/", "me", "s3cr:t"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode = %v, want 0600", fi.Mode().Perm())
	}
	got := readJSON(t, p)
	want := readJSONString(t, existing)
	want["auths"].(map[string]any)["127.0.0.1:5000"] = map[string]any{"auth": basicAuth("me", "s3cr:t")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config after SaveLogin (-want +got):\n%s", diff)
	}
	cfg := resolveAuth(t, dir, "127.0.0.1:5000/app")
	if cfg.Username != "me" || cfg.Password != "s3cr:t" {
		t.Errorf("keychain after SaveLogin = %s/%s, want me/s3cr:t", cfg.Username, cfg.Password)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("config dir holds %d entries, want only config.json", len(ents))
	}

	removed, err := RemoveLogin(dir, "127.0.0.1:5000")
	if err != nil || !removed {
		t.Fatalf("RemoveLogin = %v, %v; want true", removed, err)
	}
	if diff := cmp.Diff(readJSONString(t, existing), readJSON(t, p)); diff != "" {
		t.Errorf("config after RemoveLogin (-want +got):\n%s", diff)
	}
	if removed, err := RemoveLogin(dir, "127.0.0.1:5000"); err != nil || removed {
		t.Errorf("second RemoveLogin = %v, %v; want false", removed, err)
	}

	t.Run("new file", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "fresh")
		if err := SaveLogin(dir, "docker.io", "hub", "pw"); err != nil {
			t.Fatal(err)
		}
		got := readJSON(t, filepath.Join(dir, "config.json"))
		want := map[string]any{"auths": map[string]any{"https://index.docker.io/v1/": map[string]any{"auth": basicAuth("hub", "pw")}}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

func TestSaveLoginCredentialHelper(t *testing.T) {
	for _, config := range []string{`{"credsStore":"test"}`, `{"credHelpers":{"127.0.0.1:5000":"test"},"credsStore":"missing"}`} {
		t.Run(config, func(t *testing.T) {
			helperDir := fakeHelper(t, "127.0.0.1:5000")
			dir := writeDockerConfig(t, config)
			if err := SaveLogin(dir, "127.0.0.1:5000", "me", "secret"); err != nil {
				t.Fatal(err)
			}
			stored := readJSON(t, filepath.Join(helperDir, "stored"))
			want := map[string]any{"ServerURL": "127.0.0.1:5000", "Username": "me", "Secret": "secret"}
			if diff := cmp.Diff(want, stored); diff != "" {
				t.Errorf("helper got (-want +got):\n%s", diff)
			}
			dt, _ := os.ReadFile(filepath.Join(dir, "config.json"))
			if string(dt) != config {
				t.Errorf("config file changed to %s; the helper keeps the secret", dt)
			}
			removed, err := RemoveLogin(dir, "127.0.0.1:5000")
			if err != nil || !removed {
				t.Fatalf("RemoveLogin = %v, %v", removed, err)
			}
			if erased, _ := os.ReadFile(filepath.Join(helperDir, "erased")); string(erased) != "127.0.0.1:5000" {
				t.Errorf("helper erased %q, want 127.0.0.1:5000", erased)
			}
		})
	}
}

func TestLogin(t *testing.T) {
	basic := newTestRegistry(t)
	basic.setHook(requireBasicAuth("me", "secret"))

	// A registry with a token service, like Docker Hub or distribution with token auth:
	// /v2/ challenges with Bearer, /token wants basic credentials and hands out a token.
	bearer := newTestRegistry(t)
	bearer.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/token" {
			if u, p, ok := r.BasicAuth(); !ok || u != "me" || p != "secret" {
				w.WriteHeader(http.StatusUnauthorized)
				return true
			}
			json.NewEncoder(w).Encode(map[string]string{"token": "tok-" + r.URL.Query().Get("service")})
			return true
		}
		if r.Header.Get("Authorization") == "Bearer tok-test" {
			return false
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, r.Host))
		w.WriteHeader(http.StatusUnauthorized)
		return true
	})
	open := newTestRegistry(t)

	tests := []struct {
		name       string
		reg        *testRegistry
		user, pass string
		wantErr    string
	}{
		{name: "basic ok", reg: basic, user: "me", pass: "secret"},
		{name: "basic wrong password", reg: basic, user: "me", pass: "nope", wantErr: "logging in to HOST: unauthorized: incorrect username or password"},
		{name: "bearer ok", reg: bearer, user: "me", pass: "secret"},
		{name: "bearer wrong password", reg: bearer, user: "me", pass: "nope", wantErr: "logging in to HOST: unauthorized: incorrect username or password"},
		{name: "no auth needed", reg: open, user: "anyone", pass: "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.reg.requests("", true)
			err := Login(t.Context(), tc.reg.host, tc.user, tc.pass)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := tc.reg.requests(`^GET /v2/$`, false); len(got) < 2 && tc.reg != open {
					t.Errorf("login sent %v, want the ping and an authenticated GET /v2/", got)
				}
				return
			}
			want := strings.ReplaceAll(tc.wantErr, "HOST", tc.reg.host)
			if err == nil || err.Error() != want {
				t.Fatalf("Login = %v, want %q", err, want)
			}
			if !errors.Is(err, ErrUnauthorized) {
				t.Error("error is not ErrUnauthorized")
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		err := Login(t.Context(), "127.0.0.1:1", "me", "secret")
		if !errors.Is(err, ErrUnreachable) {
			t.Fatalf("Login = %v, want ErrUnreachable", err)
		}
	})
}

func resolveAuth(t *testing.T, dir, repo string) *authn.AuthConfig {
	t.Helper()
	r, err := name.NewRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	a, err := DockerKeychain(dir).Resolve(r)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := a.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func readJSON(t *testing.T, p string) map[string]any {
	t.Helper()
	dt, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return readJSONString(t, string(dt))
}

func readJSONString(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("decoding %s: %v", s, err)
	}
	return m
}
