package registry

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
)

func TestPullPlatforms(t *testing.T) {
	reg := newTestRegistry(t)
	images := map[string]v1.Image{}
	var adds []mutate.IndexAddendum
	for _, p := range []v1.Platform{
		{OS: "linux", Architecture: "amd64"},
		{OS: "linux", Architecture: "arm64", Variant: "v8"},
		{OS: "linux", Architecture: "arm", Variant: "v7"},
		{OS: "linux", Architecture: "s390x"},
	} {
		img, _ := random.Image(512, 2)
		images[p.String()] = img
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	// An attestation manifest, as BuildKit adds them: never a platform choice.
	att, _ := random.Image(64, 1)
	adds = append(adds, mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}}})
	idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
	tag, _ := name.NewTag(reg.host + "/multi:v1")
	if err := remote.WriteIndex(tag, idx, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	idxDigest := mustDigest(t, idx)
	arm7 := mustDigest(t, images["linux/arm/v7"])

	tests := []struct {
		name     string
		platform v1.Platform
		ref      string
		want     string // key into images
		wantRef  string
		wantErr  string
	}{
		{name: "amd64 by tag", platform: v1.Platform{OS: "linux", Architecture: "amd64"}, ref: reg.host + "/multi:v1", want: "linux/amd64"},
		{name: "arm64 without variant", platform: v1.Platform{OS: "linux", Architecture: "arm64"}, ref: reg.host + "/multi:v1", want: "linux/arm64/v8"},
		{name: "arm/v7 by tag", platform: v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, ref: reg.host + "/multi:v1", want: "linux/arm/v7"},
		{name: "s390x by index digest", platform: v1.Platform{OS: "linux", Architecture: "s390x"}, ref: reg.host + "/multi@" + idxDigest.String(), want: "linux/s390x"},
		{name: "tag and index digest", platform: v1.Platform{OS: "linux", Architecture: "amd64"}, ref: reg.host + "/multi:v1@" + idxDigest.String(), want: "linux/amd64"},
		{name: "image digest ignores platform", platform: v1.Platform{OS: "linux", Architecture: "amd64"}, ref: reg.host + "/multi@" + arm7.String(), want: "linux/arm/v7"},
		{name: "missing platform", platform: v1.Platform{OS: "linux", Architecture: "ppc64le"}, ref: reg.host + "/multi:v1",
			wantErr: "no image for platform linux/ppc64le (the index has linux/amd64, linux/arm64/v8, linux/arm/v7, linux/s390x)"},
		{name: "unknown digest", platform: v1.Platform{OS: "linux", Architecture: "amd64"}, ref: reg.host + "/multi@sha256:" + strings.Repeat("ab", 32),
			wantErr: "pulling " + reg.host + "/multi@sha256:" + strings.Repeat("ab", 32) + ": not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, cs := newClient(t, t.TempDir(), WithPlatform(tc.platform))
			r, err := c.Pull(t.Context(), tc.ref)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Pull = %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := images[tc.want]
			if r.ManifestDigest != mustDigest(t, want) {
				t.Errorf("ManifestDigest = %s, want %s's %s", r.ManifestDigest, tc.want, mustDigest(t, want))
			}
			if !strings.HasSuffix(r.Ref, "@"+r.ManifestDigest.String()) {
				t.Errorf("Ref %q is not pinned to the image manifest", r.Ref)
			}
			for _, b := range blobDigests(t, want) {
				if !cs.Has(digest.Digest(b.String())) {
					t.Errorf("blob %s of %s not in the content store", b, tc.want)
				}
			}
		})
	}
}

// TestPullByDigestOffline: a digest whose blobs are all stored is answered without the
// registry.
func TestPullByDigestOffline(t *testing.T) {
	reg := newTestRegistry(t)
	img, _ := random.Image(256, 2)
	c, _ := newClient(t, t.TempDir())
	if err := c.Push(t.Context(), reg.host+"/app:v1", img); err != nil {
		t.Fatal(err)
	}
	ref := reg.host + "/app@" + mustDigest(t, img).String()
	if _, err := c.Pull(t.Context(), ref); err != nil {
		t.Fatal(err)
	}
	reg.srv.Close()
	if _, err := c.Pull(t.Context(), ref); err != nil {
		t.Fatalf("Pull by stored digest with the registry gone: %v", err)
	}
	if _, err := c.Pull(t.Context(), reg.host+"/app:v1"); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Pull by tag with the registry gone = %v, want ErrUnreachable", err)
	}
}

func TestErrorsNameTheReference(t *testing.T) {
	reg := newTestRegistry(t)
	img, _ := random.Image(64, 1)
	seed, _ := newClient(t, t.TempDir())
	if err := seed.Push(t.Context(), reg.host+"/app:1", img); err != nil {
		t.Fatal(err)
	}
	denied := func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`)
		return true
	}
	bare403 := func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/v2/" {
			return false
		}
		w.WriteHeader(http.StatusForbidden)
		return true
	}
	tests := []struct {
		name   string
		hook   func(w http.ResponseWriter, r *http.Request) bool
		push   bool
		ref    string
		want   string
		wantIs error
	}{
		{name: "pull 401", hook: requireBasicAuth("me", "secret"), ref: "/app:1",
			want: "pulling HOST/app:1: unauthorized: authentication required (run builder login HOST)", wantIs: ErrUnauthorized},
		{name: "push 401", hook: requireBasicAuth("me", "secret"), push: true, ref: "/app:2",
			want: "pushing HOST/app:2: unauthorized: authentication required (run builder login HOST)", wantIs: ErrUnauthorized},
		{name: "pull 403 denied", hook: denied, ref: "/app:1",
			want: "pulling HOST/app:1: access denied: requested access to the resource is denied", wantIs: ErrDenied},
		{name: "pull bare 403", hook: bare403, ref: "/app:1",
			want: "pulling HOST/app:1: access denied", wantIs: ErrDenied},
		{name: "tag unknown", ref: "/app:2",
			want: "pulling HOST/app:2: not found: manifest unknown", wantIs: ErrNotFound},
		{name: "repository unknown", ref: "/nothing:1",
			want: "pulling HOST/nothing:1: not found: repository unknown", wantIs: ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg.setHook(tc.hook)
			t.Cleanup(func() { reg.setHook(nil) })
			c, _ := newClient(t, t.TempDir(), WithKeychain(authn.NewMultiKeychain()))
			var err error
			if tc.push {
				err = c.Push(t.Context(), reg.host+tc.ref, img)
			} else {
				_, err = c.Pull(t.Context(), reg.host+tc.ref)
			}
			want := strings.ReplaceAll(tc.want, "HOST", reg.host)
			if err == nil || err.Error() != want {
				t.Fatalf("got %v\nwant %s", err, want)
			}
			if !errors.Is(err, tc.wantIs) {
				t.Errorf("error is not %v", tc.wantIs)
			}
		})
	}
}
