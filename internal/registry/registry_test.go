package registry

import (
	"bytes"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache/content"
)

func TestNormalize(t *testing.T) {
	const dg = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{name: "official", in: "busybox", want: "docker.io/library/busybox:latest"},
		{name: "official tag", in: "busybox:1.36", want: "docker.io/library/busybox:1.36"},
		{name: "user repo", in: "someone/app", want: "docker.io/someone/app:latest"},
		{name: "docker.io explicit", in: "docker.io/busybox", want: "docker.io/library/busybox:latest"},
		{name: "index.docker.io", in: "index.docker.io/library/busybox:1", want: "docker.io/library/busybox:1"},
		{name: "registry with port", in: "127.0.0.1:5000/x", want: "127.0.0.1:5000/x:latest"},
		{name: "registry with port and tag", in: "127.0.0.1:5000/x/y:v2", want: "127.0.0.1:5000/x/y:v2"},
		{name: "localhost", in: "localhost:5000/x", want: "localhost:5000/x:latest"},
		{name: "other registry", in: "ghcr.io/org/img:tag", want: "ghcr.io/org/img:tag"},
		{name: "digest only", in: "busybox@" + dg, want: "docker.io/library/busybox@" + dg},
		{name: "tag and digest", in: "busybox:1.36@" + dg, want: "docker.io/library/busybox:1.36@" + dg},
		{name: "port and digest", in: "127.0.0.1:5000/x@" + dg, want: "127.0.0.1:5000/x@" + dg},
		{name: "empty", in: "", wantErr: true},
		{name: "uppercase", in: "BusyBox", wantErr: true},
		{name: "bad digest", in: "busybox@sha256:nothex", wantErr: true},
		{name: "bad tag", in: "busybox:has space", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Normalize(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Normalize(%q) = %q, want error", tc.in, got)
				}
				if tc.in != "" && !strings.Contains(err.Error(), tc.in) {
					t.Errorf("Normalize(%q) error %q does not name the reference", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Normalize(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// newRegistry starts an in-process registry, optionally behind wrap, and returns its
// host:port.
func newRegistry(t *testing.T, wrap func(http.Handler) http.Handler) (*httptest.Server, string) {
	t.Helper()
	var h http.Handler = ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, strings.TrimPrefix(srv.URL, "http://")
}

func newClient(t *testing.T, root string, opts ...Option) (*Client, *content.Store) {
	t.Helper()
	cs, err := content.Open(filepath.Join(root, "content"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(cs, filepath.Join(root, "registry"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c, cs
}

func mustDigest(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestResolveByTagRemembers(t *testing.T) {
	srv, host := newRegistry(t, nil)
	root := t.TempDir()
	c, cs := newClient(t, root)
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/x:v1"
	if err := c.Push(t.Context(), ref, img); err != nil {
		t.Fatal(err)
	}
	want := mustDigest(t, img)
	wantCfg, _ := img.RawConfigFile()

	r, err := c.Resolve(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if r.ManifestDigest != want {
		t.Errorf("ManifestDigest = %s, want %s", r.ManifestDigest, want)
	}
	if wantRef := ref + "@" + want.String(); r.Ref != wantRef {
		t.Errorf("Ref = %q, want %q", r.Ref, wantRef)
	}
	if !bytes.Equal(r.Config, wantCfg) {
		t.Errorf("Config = %s, want %s", r.Config, wantCfg)
	}
	if len(r.Manifest.Layers) != 2 {
		t.Errorf("manifest has %d layers, want 2", len(r.Manifest.Layers))
	}
	if !cs.Has(digest.Digest(want.String())) {
		t.Errorf("manifest %s not in the content store", want)
	}

	srv.Close()
	// A fresh client on the same root: the answer must come from disk, not memory.
	c2, _ := newClient(t, root)
	r2, err := c2.Resolve(t.Context(), ref)
	if err != nil {
		t.Fatalf("Resolve with the registry gone: %v", err)
	}
	if r2.ManifestDigest != want || r2.Ref != r.Ref {
		t.Errorf("remembered Resolve = %s %s, want %s %s", r2.Ref, r2.ManifestDigest, r.Ref, want)
	}

	c3, _ := newClient(t, root, WithAlwaysPull())
	if _, err := c3.Resolve(t.Context(), ref); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Resolve with WithAlwaysPull and the registry gone = %v, want ErrUnreachable", err)
	}
}

func TestResolveByDigest(t *testing.T) {
	_, host := newRegistry(t, nil)
	c, _ := newClient(t, t.TempDir())
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Push(t.Context(), host+"/y:v1", img); err != nil {
		t.Fatal(err)
	}
	want := mustDigest(t, img)
	ref := host + "/y@" + want.String()
	r, err := c.Resolve(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if r.ManifestDigest != want || r.Ref != ref {
		t.Errorf("Resolve(%s) = %s %s, want %s", ref, r.Ref, r.ManifestDigest, want)
	}
}

func TestResolveIndexPicksPlatform(t *testing.T) {
	_, host := newRegistry(t, nil)
	amd, _ := random.Image(256, 1)
	arm, _ := random.Image(256, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	tag, err := name.NewTag(host + "/multi:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(tag, idx, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	idxDigest := mustDigest(t, idx)

	tests := []struct {
		name     string
		platform v1.Platform
		ref      string
		want     v1.Hash
		wantErr  string
	}{
		{name: "amd64 by tag", platform: v1.Platform{OS: "linux", Architecture: "amd64"}, ref: host + "/multi:v1", want: mustDigest(t, amd)},
		{name: "arm64 by tag", platform: v1.Platform{OS: "linux", Architecture: "arm64"}, ref: host + "/multi:v1", want: mustDigest(t, arm)},
		{name: "amd64 by index digest", platform: v1.Platform{OS: "linux", Architecture: "amd64"}, ref: host + "/multi@" + idxDigest.String(), want: mustDigest(t, amd)},
		{name: "missing platform", platform: v1.Platform{OS: "linux", Architecture: "s390x"}, ref: host + "/multi:v1", wantErr: "no image for platform linux/s390x (the index has linux/arm64/v8, linux/amd64)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newClient(t, t.TempDir(), WithPlatform(tc.platform))
			r, err := c.Resolve(t.Context(), tc.ref)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Resolve = %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.ManifestDigest != tc.want {
				t.Errorf("ManifestDigest = %s, want %s", r.ManifestDigest, tc.want)
			}
			if !strings.HasSuffix(r.Ref, "@"+tc.want.String()) {
				t.Errorf("Ref %q is not pinned to %s", r.Ref, tc.want)
			}
		})
	}
}

func TestFetchLayer(t *testing.T) {
	// The wrapper corrupts one blob so that verification has something to catch.
	var corrupt atomic.Value
	corrupt.Store("")
	_, host := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c := corrupt.Load().(string); c != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+c) {
				w.Header().Set("Content-Type", "application/octet-stream")
				io.WriteString(w, "not the blob you asked for")
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	c, cs := newClient(t, t.TempDir())
	img, _ := random.Image(1024, 2)
	ref := host + "/layers:v1"
	if err := c.Push(t.Context(), ref, img); err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	good, bad := m.Layers[0], m.Layers[1]

	if err := c.FetchLayer(t.Context(), ref, good); err != nil {
		t.Fatal(err)
	}
	l, _ := img.LayerByDigest(good.Digest)
	rc, _ := l.Compressed()
	want, _ := io.ReadAll(rc)
	got, err := cs.ReadAll(t.Context(), digest.Digest(good.Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("fetched layer differs from the pushed one")
	}

	corrupt.Store(bad.Digest.String())
	err = c.FetchLayer(t.Context(), ref, bad)
	if err == nil {
		t.Fatal("FetchLayer of a corrupted blob succeeded")
	}
	t.Logf("corrupted blob: %v", err)
	if !strings.Contains(err.Error(), bad.Digest.String()) || !strings.Contains(err.Error(), ref) {
		t.Errorf("error %q should name the layer and the reference", err)
	}
	if cs.Has(digest.Digest(bad.Digest.String())) {
		t.Error("corrupted blob was stored")
	}
}

func TestErrors(t *testing.T) {
	_, host := newRegistry(t, nil)
	// A registry that wants basic auth for everything.
	_, authHost := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "me" || p != "secret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	img, _ := random.Image(64, 1)

	t.Run("unreachable", func(t *testing.T) {
		c, _ := newClient(t, t.TempDir())
		_, err := c.Resolve(t.Context(), "127.0.0.1:1/x")
		const want = "pulling 127.0.0.1:1/x:latest: cannot reach registry 127.0.0.1:1: connection refused"
		if err == nil || err.Error() != want {
			t.Fatalf("Resolve = %v, want %q", err, want)
		}
		if !errors.Is(err, ErrUnreachable) {
			t.Error("error is not ErrUnreachable")
		}
	})
	t.Run("manifest unknown", func(t *testing.T) {
		c, _ := newClient(t, t.TempDir())
		_, err := c.Resolve(t.Context(), host+"/nothing:v9")
		want := "pulling " + host + "/nothing:v9: not found"
		t.Log(err)
		if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, ErrNotFound) {
			t.Fatalf("Resolve = %v, want ErrNotFound starting %q", err, want)
		}
	})
	t.Run("tag unknown", func(t *testing.T) {
		c, _ := newClient(t, t.TempDir())
		if err := c.Push(t.Context(), host+"/exists:v1", img); err != nil {
			t.Fatal(err)
		}
		_, err := c.Resolve(t.Context(), host+"/exists:v2")
		want := "pulling " + host + "/exists:v2: not found: manifest unknown"
		if err == nil || err.Error() != want || !errors.Is(err, ErrNotFound) {
			t.Fatalf("Resolve = %v, want ErrNotFound %q", err, want)
		}
	})
	t.Run("unauthorized", func(t *testing.T) {
		c, _ := newClient(t, t.TempDir(), WithKeychain(authn.NewMultiKeychain()))
		err := c.Push(t.Context(), authHost+"/private:v1", img)
		want := "pushing " + authHost + "/private:v1: unauthorized"
		t.Log(err)
		if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("Push = %v, want ErrUnauthorized starting %q", err, want)
		}
		_, err = c.Resolve(t.Context(), authHost+"/private:v1")
		if !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("Resolve = %v, want ErrUnauthorized", err)
		}
	})
	t.Run("authorized by keychain", func(t *testing.T) {
		kc := staticKeychain{authn.FromConfig(authn.AuthConfig{Username: "me", Password: "secret"})}
		c, _ := newClient(t, t.TempDir(), WithKeychain(kc))
		if err := c.Push(t.Context(), authHost+"/private:v1", img); err != nil {
			t.Fatal(err)
		}
		r, err := c.Resolve(t.Context(), authHost+"/private:v1")
		if err != nil {
			t.Fatal(err)
		}
		if r.ManifestDigest != mustDigest(t, img) {
			t.Errorf("ManifestDigest = %s, want %s", r.ManifestDigest, mustDigest(t, img))
		}
	})
	t.Run("bad reference", func(t *testing.T) {
		c, _ := newClient(t, t.TempDir())
		if _, err := c.Resolve(t.Context(), "UPPER/case"); err == nil || !strings.Contains(err.Error(), `"UPPER/case"`) {
			t.Fatalf("Resolve = %v, want an error naming the reference", err)
		}
	})
}

func TestInsecureHosts(t *testing.T) {
	c, _ := newClient(t, t.TempDir(), WithInsecureRegistries("reg.internal:5000", "other.internal"))
	tests := map[string]bool{
		"localhost":          true,
		"localhost:5000":     true,
		"127.0.0.1:1":        true,
		"127.0.0.2":          true,
		"[::1]:5000":         true,
		"reg.internal:5000":  true,
		"reg.internal:5001":  false,
		"other.internal:443": true,
		"docker.io":          false,
		"ghcr.io":            false,
	}
	for host, want := range tests {
		if got := c.insecure(host); got != want {
			t.Errorf("insecure(%q) = %v, want %v", host, got, want)
		}
	}
}

type staticKeychain struct{ a authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }

func TestProbe(t *testing.T) {
	tests := []struct {
		name, raw string
		want      manifestKind
		wantErr   string
	}{
		{name: "oci index", raw: `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`, want: kindIndex},
		{name: "index without media type", raw: `{"schemaVersion":2,"manifests":[]}`, want: kindIndex},
		{name: "docker list", raw: `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}`, want: kindIndex},
		{name: "docker manifest", raw: `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{}}`, want: kindManifest},
		{name: "manifest without media type", raw: `{"schemaVersion":2,"config":{}}`, want: kindManifest},
		{name: "schema 1", raw: `{"schemaVersion":1,"name":"x"}`, wantErr: "schema 1"},
		{name: "artifact", raw: `{"schemaVersion":2,"mediaType":"application/x-other"}`, wantErr: "unsupported manifest media type"},
		{name: "garbage", raw: `{`, wantErr: "decoding manifest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := probe([]byte(tc.raw))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("probe = %v, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("probe = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
