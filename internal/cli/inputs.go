package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/builderdev/builder/solver/ops"
)

// readDockerfile returns the Dockerfile's bytes and the name errors show for it. "-"
// reads standard input, as docker build -f - does.
func readDockerfile(path string, stdin io.Reader) ([]byte, string, error) {
	if path == "-" {
		dt, err := io.ReadAll(stdin)
		if err != nil {
			return nil, "", fmt.Errorf("reading Dockerfile from stdin: %w", err)
		}
		return dt, "Dockerfile (stdin)", nil
	}
	dt, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("reading Dockerfile: %w", err)
	}
	return dt, path, nil
}

// readIgnore returns the context's ignore patterns: <Dockerfile>.dockerignore next to
// the Dockerfile wins over CONTEXT/.dockerignore, as in BuildKit. dockerfile is "" when
// the Dockerfile came from stdin.
func readIgnore(contextDir, dockerfile string) ([]string, error) {
	var candidates []string
	if dockerfile != "" {
		candidates = append(candidates, dockerfile+".dockerignore")
	}
	if contextDir != "" {
		candidates = append(candidates, filepath.Join(contextDir, ".dockerignore"))
	}
	for _, name := range candidates {
		f, err := os.Open(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		patterns, err := ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		// Compile once here so a bad pattern is reported against its file, not later
		// in the middle of a COPY.
		if _, err := patternmatcher.New(patterns); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return patterns, nil
	}
	return nil, nil
}

// parseKV splits a buildx-style "k=v,k=v" flag value.
func parseKV(flag, spec string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: %q is not key=value", flag, spec, part)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%s %q: %q given twice", flag, spec, k)
		}
		out[k] = v
	}
	return out, nil
}

// secretStore holds the build's --secret values in memory: they are read once, when
// the build starts, and never written anywhere but the sandbox's secret mount.
type secretStore map[string][]byte

func (s secretStore) GetSecret(_ context.Context, id string) ([]byte, error) {
	v, ok := s[id]
	if !ok {
		return nil, fmt.Errorf("secret %q: %w (pass it with --secret id=%s,src=FILE)", id, ops.ErrSecretNotFound, id)
	}
	return v, nil
}

// parseSecrets reads --secret id=ID[,src=FILE|,env=VAR][,type=file|env] as buildx
// does: with neither src nor env, the value comes from the environment variable named
// ID if it is set, else from a file named ID.
func parseSecrets(specs []string, getenv func(string) (string, bool)) (secretStore, error) {
	out := secretStore{}
	for _, spec := range specs {
		kv, err := parseKV("--secret", spec)
		if err != nil {
			return nil, err
		}
		id := kv["id"]
		if id == "" {
			return nil, fmt.Errorf("--secret %q: id= is required", spec)
		}
		src, env := kv["src"], kv["env"]
		if s, ok := kv["source"]; ok && src == "" {
			src = s
		}
		for k := range kv {
			switch k {
			case "id", "src", "source", "env", "type":
			default:
				return nil, fmt.Errorf("--secret %q: unknown key %q (want id, src, env, type)", spec, k)
			}
		}
		switch kv["type"] {
		case "", "file", "env":
		default:
			return nil, fmt.Errorf("--secret %q: type must be file or env", spec)
		}
		if src != "" && env != "" {
			return nil, fmt.Errorf("--secret %q: give src or env, not both", spec)
		}
		if src == "" && env == "" {
			if kv["type"] == "file" {
				src = id
			} else if _, ok := getenv(id); ok || kv["type"] == "env" {
				env = id
			} else {
				src = id
			}
		}
		if env != "" {
			v, ok := getenv(env)
			if !ok {
				return nil, fmt.Errorf("--secret %q: environment variable %s is not set", spec, env)
			}
			out[id] = []byte(v)
			continue
		}
		dt, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("--secret %q: %w", spec, err)
		}
		out[id] = dt
	}
	return out, nil
}

// parseSSH reads --ssh default | ID | ID=SOCKET: without a socket the agent of
// SSH_AUTH_SOCK is forwarded.
func parseSSH(specs []string, getenv func(string) (string, bool)) (map[string]string, error) {
	out := map[string]string{}
	for _, spec := range specs {
		id, sock, ok := strings.Cut(spec, "=")
		if id == "" {
			return nil, fmt.Errorf("--ssh %q: missing id", spec)
		}
		if !ok || sock == "" {
			v, set := getenv("SSH_AUTH_SOCK")
			if !set || v == "" {
				return nil, fmt.Errorf("--ssh %s: SSH_AUTH_SOCK is not set; start an ssh-agent or give --ssh %s=SOCKET", id, id)
			}
			sock = v
		}
		fi, err := os.Stat(sock)
		if err != nil {
			return nil, fmt.Errorf("--ssh %s: %w", id, err)
		}
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("--ssh %s: %s is not an agent socket (only sockets are supported, not key files)", id, sock)
		}
		abs, err := filepath.Abs(sock)
		if err != nil {
			return nil, err
		}
		out[id] = abs
	}
	return out, nil
}

// buildContexts reads --build-context NAME=DIR|docker-image://REF|oci-layout://PATH
// into the frontend's named contexts and the local directories they add.
func buildContexts(specs []string) (named map[string]string, locals map[string]string, err error) {
	named, locals = map[string]string{}, map[string]string{}
	for _, spec := range specs {
		name, v, ok := strings.Cut(spec, "=")
		if !ok || name == "" || v == "" {
			return nil, nil, fmt.Errorf("--build-context %q: want NAME=DIR, NAME=docker-image://REF or NAME=oci-layout://PATH", spec)
		}
		if _, dup := named[name]; dup {
			return nil, nil, fmt.Errorf("--build-context %q: %s given twice", spec, name)
		}
		switch {
		case strings.HasPrefix(v, "docker-image://"):
			if strings.TrimPrefix(v, "docker-image://") == "" {
				return nil, nil, fmt.Errorf("--build-context %q: empty image reference", spec)
			}
			named[name] = v
		case strings.HasPrefix(v, "oci-layout://"):
			p := strings.TrimPrefix(v, "oci-layout://")
			path, rest := splitLayoutRef(p)
			abs, err := filepath.Abs(path)
			if err != nil {
				return nil, nil, err
			}
			if fi, err := os.Stat(filepath.Join(abs, "index.json")); err != nil || fi.IsDir() {
				return nil, nil, fmt.Errorf("--build-context %q: %s is not an OCI layout (no index.json)", spec, path)
			}
			named[name] = "oci-layout://" + abs + rest
		case strings.Contains(v, "://"):
			return nil, nil, fmt.Errorf("--build-context %q: unsupported source (want a directory, docker-image:// or oci-layout://)", spec)
		default:
			abs, err := filepath.Abs(v)
			if err != nil {
				return nil, nil, err
			}
			if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
				return nil, nil, fmt.Errorf("--build-context %q: %s is not a directory", spec, v)
			}
			local := "context:" + name
			named[name] = "local://" + local
			locals[local] = abs
		}
	}
	return named, locals, nil
}

// splitLayoutRef splits "PATH[:TAG|@DIGEST]" into the path and the suffix with its
// separator; a ":" inside the path (before the last "/") is part of it.
func splitLayoutRef(p string) (string, string) {
	if i := strings.LastIndex(p, "@"); i > 0 {
		return p[:i], p[i:]
	}
	if i := strings.LastIndex(p, ":"); i > strings.LastIndex(p, "/") && i > 0 {
		return p[:i], p[i:]
	}
	return p, ""
}

func parseLabels(specs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, l := range specs {
		k, v, _ := strings.Cut(l, "=")
		if k == "" {
			return nil, fmt.Errorf("--label %q: missing key", l)
		}
		out[k] = v
	}
	return out, nil
}
