package cli

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseSecrets(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TOKEN": "from-env", "OTHER": "other"}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tc := range []struct {
		spec, id, want, err string
	}{
		{spec: "id=a,src=" + file, id: "a", want: "s3cr3t\n"},
		{spec: "id=a,source=" + file, id: "a", want: "s3cr3t\n"},
		{spec: "id=a,env=OTHER", id: "a", want: "other"},
		{spec: "type=env,id=TOKEN", id: "TOKEN", want: "from-env"},
		{spec: "id=TOKEN", id: "TOKEN", want: "from-env"},
		{spec: "src=" + file, err: "id= is required"},
		{spec: "id=a,env=MISSING", err: "MISSING is not set"},
		{spec: "id=a,src=/does/not/exist", err: "no such file"},
		{spec: "id=a,src=x,env=y", err: "not both"},
		{spec: "id=a,color=red", err: `unknown key "color"`},
		{spec: "id=a,type=ssh", err: "type must be"},
		{spec: "ida", err: "not key=value"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := parseSecrets([]string{tc.spec}, getenv)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got[tc.id]) != tc.want {
				t.Fatalf("secret %s = %q, want %q", tc.id, got[tc.id], tc.want)
			}
		})
	}
}

func TestSecretStoreMissingIDNamesTheFlag(t *testing.T) {
	_, err := secretStore{}.GetSecret(t.Context(), "npm")
	if err == nil || !strings.Contains(err.Error(), "--secret id=npm") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseSSH(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	plain := filepath.Join(dir, "id_rsa")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	withAgent := func(k string) (string, bool) {
		if k == "SSH_AUTH_SOCK" {
			return sock, true
		}
		return "", false
	}
	noAgent := func(string) (string, bool) { return "", false }

	got, err := parseSSH([]string{"default", "deploy=" + sock}, withAgent)
	if err != nil {
		t.Fatal(err)
	}
	if got["default"] != sock || got["deploy"] != sock {
		t.Fatalf("got %v", got)
	}
	if _, err := parseSSH([]string{"default"}, noAgent); err == nil || !strings.Contains(err.Error(), "SSH_AUTH_SOCK") {
		t.Fatalf("no agent: err = %v", err)
	}
	if _, err := parseSSH([]string{"k=" + plain}, noAgent); err == nil || !strings.Contains(err.Error(), "not an agent socket") {
		t.Fatalf("key file: err = %v", err)
	}
}

func TestBuildContexts(t *testing.T) {
	dir := t.TempDir()
	layout := filepath.Join(dir, "layout")
	if err := os.MkdirAll(layout, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(layout, "index.json"), []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	named, locals, err := buildContexts([]string{
		"src=" + dir,
		"base=docker-image://127.0.0.1:5000/base:1",
		"lay=oci-layout://" + layout + ":v1",
		"dig=oci-layout://" + layout + "@sha256:abc",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"src":  "local://context:src",
		"base": "docker-image://127.0.0.1:5000/base:1",
		"lay":  "oci-layout://" + layout + ":v1",
		"dig":  "oci-layout://" + layout + "@sha256:abc",
	}
	for k, v := range want {
		if named[k] != v {
			t.Errorf("named[%s] = %q, want %q", k, named[k], v)
		}
	}
	if locals["context:src"] != dir {
		t.Errorf("locals = %v", locals)
	}
	for _, bad := range []string{"noequals", "x=" + filepath.Join(dir, "missing"), "x=git://host/repo", "x=oci-layout://" + dir, "x=docker-image://"} {
		if _, _, err := buildContexts([]string{bad}); err == nil || !strings.Contains(err.Error(), "--build-context") {
			t.Errorf("%s: err = %v", bad, err)
		}
	}
	if _, _, err := buildContexts([]string{"a=" + dir, "a=" + dir}); err == nil {
		t.Error("a name given twice was accepted")
	}
}

func TestReadIgnorePrefersTheDockerfilesOwn(t *testing.T) {
	ctx := t.TempDir()
	df := filepath.Join(t.TempDir(), "app.Dockerfile")
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := readIgnore(ctx, df)
	if err != nil || got != nil {
		t.Fatalf("no ignore files: %v, %v", got, err)
	}
	write(filepath.Join(ctx, ".dockerignore"), "# comment\n*.log\n!keep.log\n")
	got, err = readIgnore(ctx, df)
	if err != nil || !slices.Equal(got, []string{"*.log", "!keep.log"}) {
		t.Fatalf("context .dockerignore: %v, %v", got, err)
	}
	write(df+".dockerignore", "secret/**\n")
	got, err = readIgnore(ctx, df)
	if err != nil || !slices.Equal(got, []string{"secret/**"}) {
		t.Fatalf("Dockerfile's own: %v, %v", got, err)
	}
	write(df+".dockerignore", "[\n")
	if _, err := readIgnore(ctx, df); err == nil || !strings.Contains(err.Error(), ".dockerignore") {
		t.Fatalf("bad pattern: err = %v", err)
	}
}

func TestSplitLayoutRef(t *testing.T) {
	for in, want := range map[string][2]string{
		"/a/b":              {"/a/b", ""},
		"/a/b:v1":           {"/a/b", ":v1"},
		"/a/b@sha256:1":     {"/a/b", "@sha256:1"},
		"/a:b/c":            {"/a:b/c", ""},
		"rel/layout:latest": {"rel/layout", ":latest"},
	} {
		p, rest := splitLayoutRef(in)
		if p != want[0] || rest != want[1] {
			t.Errorf("splitLayoutRef(%q) = %q, %q; want %q", in, p, rest, want)
		}
	}
}
