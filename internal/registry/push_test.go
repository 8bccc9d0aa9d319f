package registry

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// blobDigests are img's layer digests and its config digest.
func blobDigests(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	out := []v1.Hash{m.Config.Digest}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

func pullRemote(t *testing.T, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("reading %s back: %v", ref, err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate.Image(%s) = %v", ref, err)
	}
	return img
}

func TestPushSkipsExistingBlobs(t *testing.T) {
	reg := newTestRegistry(t)
	c, _ := newClient(t, t.TempDir())
	img, _ := random.Image(1024, 3)
	if err := c.Push(t.Context(), reg.host+"/app:v1", img); err != nil {
		t.Fatal(err)
	}
	if got := reg.requests(`^PATCH `, true); len(got) != 4 {
		t.Errorf("first push uploaded %d blobs, want 4 (3 layers and the config): %v", len(got), got)
	}

	// A new client, as a later builder process would be: nothing is known in memory.
	c, _ = newClient(t, t.TempDir())
	if err := c.Push(t.Context(), reg.host+"/app:v2", img); err != nil {
		t.Fatal(err)
	}
	if got := reg.requests(`^(POST|PATCH) .*/blobs/uploads`, false); len(got) != 0 {
		t.Errorf("second push started uploads of blobs the repository has: %v", got)
	}
	if got := reg.requests(`^HEAD /v2/app/blobs/`, false); len(got) != 4 {
		t.Errorf("second push checked %d blobs, want 4: %v", len(got), got)
	}
	if got := reg.requests(`^PUT /v2/app/manifests/v2$`, true); len(got) != 1 {
		t.Errorf("second push did not put the manifest under v2: %v", got)
	}
	pullRemote(t, reg.host+"/app:v2")
	reg.requests("", true)

	// The same tag again: the manifest is there, nothing else is asked.
	if err := c.Push(t.Context(), reg.host+"/app:v2", img); err != nil {
		t.Fatal(err)
	}
	if got := reg.requests(`/blobs/|^PUT `, true); len(got) != 0 {
		t.Errorf("pushing an existing tag again sent %v", got)
	}
}

func TestPushMountsFromOtherRepository(t *testing.T) {
	reg := newTestRegistry(t)
	other := newTestRegistry(t)
	img, _ := random.Image(1024, 2)
	blobs := blobDigests(t, img)

	// The source repository is filled by someone else; this root learns about it by
	// pulling.
	src, _ := name.NewTag(reg.host + "/team/base:v1")
	if err := remote.Write(src, img, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	c, _ := newClient(t, root)
	if _, err := c.Pull(t.Context(), reg.host+"/team/base:v1"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		ref       string
		reg       *testRegistry
		repo      string
		from      string // "" when nothing may be mounted
		wantPatch int
	}{
		// Learnt from the pull.
		{name: "from pulled repository", ref: reg.host + "/app:v1", reg: reg, repo: "app", from: "team/base"},
		// Learnt from the push just before (the newest source wins).
		{name: "from pushed repository", ref: reg.host + "/app2:v1", reg: reg, repo: "app2", from: "app"},
		// Mounts never cross registries.
		{name: "other registry uploads", ref: other.host + "/app:v1", reg: other, repo: "app", wantPatch: len(blobs)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.reg.requests("", true)
			// A fresh client on the same root: the sources are on disk.
			c, _ := newClient(t, root)
			if err := c.Push(t.Context(), tc.ref, img); err != nil {
				t.Fatal(err)
			}
			posts := tc.reg.requests(`^POST /v2/`+tc.repo+`/blobs/uploads`, false)
			var mounted []string
			for _, p := range posts {
				u, _ := url.Parse(strings.TrimPrefix(p, "POST "))
				if u.Query().Get("mount") != "" {
					mounted = append(mounted, u.Query().Get("mount"))
					if from := u.Query().Get("from"); from != tc.from {
						t.Errorf("mount from %q, want %q", from, tc.from)
					}
				}
			}
			if tc.from == "" {
				if len(mounted) != 0 {
					t.Errorf("offered mounts %v across registries", mounted)
				}
			} else {
				for _, b := range blobs {
					if !slices.Contains(mounted, b.String()) {
						t.Errorf("blob %s was not mounted (mounted %v)", b, mounted)
					}
				}
			}
			if got := tc.reg.requests(`^PATCH `, false); len(got) != tc.wantPatch {
				t.Errorf("push uploaded %d blobs, want %d: %v", len(got), tc.wantPatch, got)
			}
			for _, b := range blobs {
				if !tc.reg.has(tc.repo, b) {
					t.Errorf("repository %s lacks blob %s after the push", tc.repo, b)
				}
			}
			pullRemote(t, tc.ref)
		})
	}
}

func TestPushRetriesUploads(t *testing.T) {
	reg := newTestRegistry(t)
	c, _ := newClient(t, t.TempDir(), WithRetries(3, time.Millisecond))
	img, _ := random.Image(512, 1)
	failed := 0
	reg.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPatch && failed < 1 {
			failed++
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	if err := c.Push(t.Context(), reg.host+"/app:v1", img); err != nil {
		t.Fatalf("push with one failed upload: %v", err)
	}
	if got := reg.requests(`^PATCH `, false); len(got) != 3 {
		t.Errorf("uploads = %d, want 3 (2 blobs, one of them twice): %v", len(got), got)
	}
	pullRemote(t, reg.host+"/app:v1")
}

func TestPushIndex(t *testing.T) {
	reg := newTestRegistry(t)
	root := t.TempDir()
	c, _ := newClient(t, root)
	amd, _ := random.Image(256, 2)
	arm, _ := random.Image(256, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	if err := c.PushIndex(t.Context(), reg.host+"/multi:v1", idx); err != nil {
		t.Fatal(err)
	}
	// A second repository mounts every blob of both images.
	reg.requests("", true)
	if err := c.PushIndex(t.Context(), reg.host+"/multi2:v1", idx); err != nil {
		t.Fatal(err)
	}
	if got := reg.requests(`^PATCH `, false); len(got) != 0 {
		t.Errorf("second index push uploaded blobs: %v", got)
	}
	if got := reg.requests(`^POST .*mount=`, false); len(got) != 5 {
		t.Errorf("second index push mounted %d blobs, want 5: %v", len(got), got)
	}
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}} {
		r, _ := name.ParseReference(reg.host + "/multi2:v1")
		img, err := remote.Image(r, remote.WithPlatform(p), remote.WithContext(t.Context()))
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// TestInsecureTLS: an insecure registry with a certificate nobody signed is reached
// over https with verification off (loopback hosts are always insecure).
func TestInsecureTLS(t *testing.T) {
	srv := httptest.NewTLSServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	c, _ := newClient(t, t.TempDir())
	img, _ := random.Image(256, 1)
	if err := c.Push(t.Context(), host+"/app:v1", img); err != nil {
		t.Fatalf("Push to a self-signed loopback registry: %v", err)
	}
	r, err := c.Pull(t.Context(), host+"/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if r.ManifestDigest != mustDigest(t, img) {
		t.Errorf("pulled %s, want %s", r.ManifestDigest, mustDigest(t, img))
	}
}

func TestWithDerivesClient(t *testing.T) {
	c, _ := newClient(t, t.TempDir(), WithInsecureRegistries("a.example"))
	d, err := c.With(WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string][2]bool{
		"a.example:5000": {true, true},
		"b.example":      {false, true},
	} {
		if got := [2]bool{c.insecure(host), d.insecure(host)}; got != want {
			t.Errorf("insecure(%q) = %v (original, derived), want %v", host, got, want)
		}
	}
	if _, err := c.With(WithInsecureRegistries("bad/host")); err == nil {
		t.Error("With accepted a bad option")
	}
	e, _ := c.With(WithInsecureRegistries("c.example"))
	if c.insecure("c.example") || !e.insecure("c.example") {
		t.Error("With changed the original client's insecure hosts")
	}
}
