package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// authRegistry is an in-process registry that wants me:secret on every request.
func authRegistry(t *testing.T) string {
	t.Helper()
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "me" || p != "secret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// runCLI runs builder with args and stdin in-process and returns what it printed.
func runCLI(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := New()
	cmd.SetArgs(args)
	cmd.SetIn(strings.NewReader(stdin))
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}

var remoteAuth = remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: "me", Password: "secret"}))

func TestLoginLogout(t *testing.T) {
	host := authRegistry(t)
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dir)
	cfgPath := filepath.Join(dir, "config.json")
	const existing = `{"auths":{"other.example":{"auth":"eDp5"}},"detachKeys":"ctrl-x"}`
	if err := os.WriteFile(cfgPath, []byte(existing), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		stdin   string
		args    []string
		want    string // printed output, or the error
		wantErr bool
	}{
		{name: "wrong password", stdin: "nope\n", args: []string{"login", "-u", "me", "--password-stdin", host}, wantErr: true,
			want: "logging in to " + host + ": unauthorized: incorrect username or password"},
		{name: "stdin without user", stdin: "secret\n", args: []string{"login", "--password-stdin", host}, wantErr: true,
			want: "--password-stdin needs the user name (-u)"},
		{name: "both password flags", stdin: "secret\n", args: []string{"login", "-u", "me", "-p", "x", "--password-stdin", host}, wantErr: true,
			want: "--password and --password-stdin are mutually exclusive"},
		{name: "no terminal to prompt", args: []string{"login", host}, wantErr: true,
			want: "no user name: pass -u (and the password with --password-stdin)"},
		{name: "login", stdin: "secret\n", args: []string{"login", "-u", "me", "--password-stdin", host}, want: "Login Succeeded\n"},
		{name: "login with -p", args: []string{"login", "-u", "me", "-p", "secret", "http://" + host + "/"},
			want: "WARNING! Using --password via the CLI is insecure. Use --password-stdin.\nLogin Succeeded\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runCLI(t, tc.stdin, tc.args...)
			if tc.wantErr {
				if err == nil || err.Error() != tc.want {
					t.Fatalf("error = %v, want %q", err, tc.want)
				}
				if dt, _ := os.ReadFile(cfgPath); string(dt) != existing {
					t.Errorf("a failed login changed the config: %s", dt)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if out != tc.want {
				t.Errorf("output %q, want %q", out, tc.want)
			}
		})
	}

	var cfg struct {
		Auths      map[string]map[string]string `json:"auths"`
		DetachKeys string                       `json:"detachKeys"`
	}
	dt, _ := os.ReadFile(cfgPath)
	if err := json.Unmarshal(dt, &cfg); err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Auths[host]["auth"], base64.StdEncoding.EncodeToString([]byte("me:secret")); got != want {
		t.Errorf("auths[%s].auth = %q, want %q", host, got, want)
	}
	if cfg.Auths["other.example"]["auth"] != "eDp5" || cfg.DetachKeys != "ctrl-x" {
		t.Errorf("login dropped other settings: %s", dt)
	}
	if fi, _ := os.Stat(cfgPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v, want 0600", fi.Mode().Perm())
	}

	out, err := runCLI(t, "", "logout", host)
	if err != nil || out != "Removing login credentials for "+host+"\n" {
		t.Errorf("logout = %q, %v", out, err)
	}
	out, err = runCLI(t, "", "logout", host)
	if err != nil || out != "Not logged in to "+host+"\n" {
		t.Errorf("second logout = %q, %v", out, err)
	}
	if dt, _ := os.ReadFile(cfgPath); strings.Contains(string(dt), host) {
		t.Errorf("logout left the credentials: %s", dt)
	}
}

func TestPullPush(t *testing.T) {
	host := authRegistry(t)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	root := t.TempDir()

	amd, _ := random.Image(512, 2)
	arm, _ := random.Image(512, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	src, _ := name.NewTag(host + "/team/app:1")
	if err := remote.WriteIndex(src, idx, remoteAuth, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	armDigest, _ := arm.Digest()

	// Not logged in: a clear error naming the reference.
	_, err := runCLI(t, "", "--root", root, "pull", "--platform", "linux/arm64", host+"/team/app:1")
	want := "pulling " + host + "/team/app:1: unauthorized: authentication required (run builder login " + host + ")"
	if err == nil || err.Error() != want {
		t.Fatalf("pull without login = %v, want %q", err, want)
	}
	if out, err := runCLI(t, "secret", "login", "-u", "me", "--password-stdin", host); err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}

	out, err := runCLI(t, "", "--root", root, "pull", "--platform", "linux/arm64", host+"/team/app:1")
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Digest: "+armDigest.String()) {
		t.Errorf("pull printed %q, want the arm64 manifest digest %s", out, armDigest)
	}
	out, err = runCLI(t, "", "--root", root, "images")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, host+"/team/app") {
		t.Errorf("images does not list the pulled image:\n%s", out)
	}

	// Push it under another name: the blobs are mounted from team/app, the manifest
	// is the pulled one byte for byte.
	out, err = runCLI(t, "", "--root", root, "push", host+"/team/app:1", host+"/copy:2")
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	if want := host + "/copy:2: digest: " + armDigest.String(); !strings.HasPrefix(out, want) {
		t.Errorf("push printed %q, want %q...", out, want)
	}
	ref, _ := name.ParseReference(host + "/copy:2")
	got, err := remote.Image(ref, remoteAuth, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := got.Digest(); d != armDigest {
		t.Errorf("pushed digest %s, want %s", d, armDigest)
	}
	if err := validate.Image(got); err != nil {
		t.Error(err)
	}

	// By digest alone: stored untagged.
	amdDigest, _ := amd.Digest()
	out, err = runCLI(t, "", "--root", root, "pull", host+"/team/app@"+amdDigest.String())
	if err != nil {
		t.Fatalf("pull by digest: %v\n%s", err, out)
	}
	out, _ = runCLI(t, "", "--root", root, "images", "-q")
	amdCfg, _ := amd.ConfigName()
	if !strings.Contains(out, amdCfg.Hex[:12]) {
		t.Errorf("images -q does not list the image pulled by digest (%s):\n%s", amdCfg.Hex[:12], out)
	}
	_, err = runCLI(t, "", "--root", root, "push", amdCfg.Hex[:12])
	if err == nil || !strings.Contains(err.Error(), "has no name") {
		t.Errorf("push of an unnamed image = %v, want a has-no-name error", err)
	}

	// Logged out: push fails naming the reference.
	if _, err := runCLI(t, "", "logout", host); err != nil {
		t.Fatal(err)
	}
	_, err = runCLI(t, "", "--root", root, "push", host+"/team/app:1", host+"/copy:3")
	want = "pushing " + host + "/copy:3: unauthorized: authentication required (run builder login " + host + ")"
	if err == nil || err.Error() != want {
		t.Errorf("push after logout = %v, want %q", err, want)
	}
}
