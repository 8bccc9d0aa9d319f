package registry

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	dockerconfig "github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/types"
	credclient "github.com/docker/docker-credential-helpers/client"
	"github.com/docker/docker-credential-helpers/credentials"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// dockerHubAuthKey is the key Docker's config file uses for Docker Hub credentials.
const dockerHubAuthKey = authn.DefaultAuthKey

// DockerConfigDir is where Docker keeps its client configuration: $DOCKER_CONFIG, or
// ~/.docker.
func DockerConfigDir() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".docker"
	}
	return filepath.Join(home, ".docker")
}

// DockerKeychain finds credentials the way docker does in dir/config.json: the
// credential helper named for the registry in credHelpers, else the credsStore
// helper, else the base64 user:password in auths. The file is read on every lookup,
// so a login by another process is seen; no file means anonymous access.
func DockerKeychain(dir string) authn.Keychain { return dockerKeychain{dir: dir} }

type dockerKeychain struct{ dir string }

func (k dockerKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	cf, err := dockerconfig.Load(k.dir)
	if err != nil {
		return nil, fmt.Errorf("reading docker config: %w", err)
	}
	key := r.RegistryStr()
	if key == name.DefaultRegistry {
		key = dockerHubAuthKey
	}
	cfg, err := cf.GetAuthConfig(key)
	if err != nil {
		return nil, fmt.Errorf("reading credentials for %s: %w", r.RegistryStr(), err)
	}
	if cfg.Username == "" && cfg.Password == "" && cfg.Auth == "" && cfg.IdentityToken == "" && cfg.RegistryToken == "" {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{
		Username:      cfg.Username,
		Password:      cfg.Password,
		Auth:          cfg.Auth,
		IdentityToken: cfg.IdentityToken,
		RegistryToken: cfg.RegistryToken,
	}), nil
}

// ServerKey turns what a user passes to login/logout ("127.0.0.1:5000",
// "https://ghcr.io/", "docker.io") into the registry host and the key Docker's config
// file uses for it ("https://index.docker.io/v1/" for Docker Hub, else the host).
func ServerKey(server string) (host, key string, err error) {
	s := strings.TrimSpace(server)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
	s, _, _ = strings.Cut(s, "/")
	switch s {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return name.DefaultRegistry, dockerHubAuthKey, nil
	}
	if _, err := name.NewRegistry(s, name.StrictValidation); err != nil || s == "" {
		return "", "", fmt.Errorf("registry %q: want a host or host:port", server)
	}
	return s, s, nil
}

// Login checks user and password against the registry at host the way docker login
// does: GET /v2/, answer its challenge (basic, or a bearer token from its token
// service) and expect 200. Of opts, those about insecure registries matter.
func Login(ctx context.Context, host, user, password string, opts ...Option) error {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return fmt.Errorf("configuring registry client: %w", err)
		}
	}
	c := &Client{o: o}
	reg, err := name.NewRegistry(host, c.nameOpts(host)...)
	if err != nil {
		return fmt.Errorf("logging in to %s: %w", host, err)
	}
	auth := authn.FromConfig(authn.AuthConfig{Username: user, Password: password})
	base := transport.NewUserAgent(c.transport(), userAgent)
	rt, err := transport.NewWithContext(ctx, reg, auth, base, nil)
	if err != nil {
		return fmt.Errorf("logging in to %s: %w", host, loginError(host, err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return fmt.Errorf("logging in to %s: %w", host, loginError(host, err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return fmt.Errorf("logging in to %s: %w", host, loginError(host, err))
	}
	return nil
}

// loginError is explain, except that a 401 means the credentials are wrong.
func loginError(host string, err error) error {
	err = explain(host, err)
	if errors.Is(err, ErrUnauthorized) {
		return &userError{msg: "unauthorized: incorrect username or password", class: ErrUnauthorized, cause: err}
	}
	return err
}

// SaveLogin stores user and password for server in dir/config.json the way docker
// login does: in the credential helper named for it in credHelpers, else in the
// credsStore helper, else base64-encoded in auths. Other contents of the file are
// kept; the file is replaced atomically and gets mode 0600.
func SaveLogin(dir, server, user, password string) error {
	_, key, err := ServerKey(server)
	if err != nil {
		return err
	}
	f, err := readConfigFile(dir)
	if err != nil {
		return err
	}
	if helper := f.helper(key); helper != "" {
		creds := &credentials.Credentials{ServerURL: key, Username: user, Secret: password}
		if err := credclient.Store(credclient.NewShellProgramFunc("docker-credential-"+helper), creds); err != nil {
			return fmt.Errorf("storing credentials for %s in docker-credential-%s: %w", key, helper, err)
		}
		return nil
	}
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	f.auths[key] = types.AuthConfig{Auth: auth}
	return f.write()
}

// RemoveLogin deletes server's credentials from dir/config.json and from its
// credential helper, if one is configured; it reports whether there were any.
func RemoveLogin(dir, server string) (bool, error) {
	_, key, err := ServerKey(server)
	if err != nil {
		return false, err
	}
	f, err := readConfigFile(dir)
	if err != nil {
		return false, err
	}
	removed := false
	if helper := f.helper(key); helper != "" {
		prog := credclient.NewShellProgramFunc("docker-credential-" + helper)
		if _, err := credclient.Get(prog, key); err == nil {
			if err := credclient.Erase(prog, key); err != nil {
				return false, fmt.Errorf("erasing credentials for %s from docker-credential-%s: %w", key, helper, err)
			}
			removed = true
		} else if !credentials.IsErrCredentialsNotFound(err) {
			return false, fmt.Errorf("reading credentials for %s from docker-credential-%s: %w", key, helper, err)
		}
	}
	// Docker also accepts keys written as URLs; remove those spellings too.
	for _, k := range []string{key, "https://" + key, "http://" + key} {
		if _, ok := f.auths[k]; ok {
			delete(f.auths, k)
			removed = true
		}
	}
	if !removed {
		return false, nil
	}
	return true, f.write()
}

// configFile is Docker's config.json with every key kept as read, so that writing it
// back changes only auths.
type configFile struct {
	path        string
	raw         map[string]json.RawMessage
	auths       map[string]types.AuthConfig
	credsStore  string
	credHelpers map[string]string
}

func readConfigFile(dir string) (*configFile, error) {
	p := filepath.Join(dir, "config.json")
	// Write through a symlink to its target, as docker does.
	if real, err := filepath.EvalSymlinks(p); err == nil {
		p = real
	}
	f := &configFile{path: p, raw: map[string]json.RawMessage{}, auths: map[string]types.AuthConfig{}}
	dt, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading docker config: %w", err)
	}
	if len(bytes.TrimSpace(dt)) == 0 {
		return f, nil
	}
	if err := json.Unmarshal(dt, &f.raw); err != nil {
		return nil, fmt.Errorf("reading docker config %s: %w", p, err)
	}
	for k, v := range map[string]any{"auths": &f.auths, "credsStore": &f.credsStore, "credHelpers": &f.credHelpers} {
		if dt, ok := f.raw[k]; ok {
			if err := json.Unmarshal(dt, v); err != nil {
				return nil, fmt.Errorf("reading docker config %s: %s: %w", p, k, err)
			}
		}
	}
	if f.auths == nil {
		f.auths = map[string]types.AuthConfig{}
	}
	return f, nil
}

// helper is the credential helper for key, or "" to use auths.
func (f *configFile) helper(key string) string {
	if h, ok := f.credHelpers[key]; ok {
		return h
	}
	return f.credsStore
}

// write replaces the file atomically (temp file in the same directory, fsync, rename)
// with mode 0600: it holds passwords.
func (f *configFile) write() (err error) {
	auths, err := json.Marshal(f.auths)
	if err != nil {
		return err
	}
	f.raw["auths"] = auths
	dt, err := json.MarshalIndent(f.raw, "", "\t")
	if err != nil {
		return fmt.Errorf("encoding docker config: %w", err)
	}
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("writing docker config: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".config.json.tmp-*")
	if err != nil {
		return fmt.Errorf("writing docker config: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("writing docker config: %w", err)
	}
	if _, err := tmp.Write(append(dt, '\n')); err != nil {
		return fmt.Errorf("writing docker config: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("writing docker config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing docker config: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return fmt.Errorf("writing docker config: %w", err)
	}
	return nil
}
