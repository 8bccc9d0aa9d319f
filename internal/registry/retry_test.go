package registry

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	digest "github.com/opencontainers/go-digest"
)

func TestRetryServerErrors(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		failures int
		wantErr  string
		wantGets int
	}{
		{name: "500 twice then ok", status: http.StatusInternalServerError, failures: 2, wantGets: 3},
		{name: "503 once then ok", status: http.StatusServiceUnavailable, failures: 1, wantGets: 2},
		{name: "429 twice then ok", status: http.StatusTooManyRequests, failures: 2, wantGets: 3},
		{name: "500 for good", status: http.StatusInternalServerError, failures: 100, wantGets: 4,
			wantErr: "registry HOST failed: Internal Server Error"},
		{name: "429 for good", status: http.StatusTooManyRequests, failures: 100, wantGets: 4,
			wantErr: "registry HOST is rate limiting requests"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := newTestRegistry(t)
			c, _ := newClient(t, t.TempDir(), WithRetries(3, time.Millisecond))
			img, _ := random.Image(256, 1)
			ref := reg.host + "/app:v1"
			if err := c.Push(t.Context(), ref, img); err != nil {
				t.Fatal(err)
			}
			var failed atomic.Int32
			reg.setHook(func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") && failed.Add(1) <= int32(tc.failures) {
					w.WriteHeader(tc.status)
					return true
				}
				return false
			})
			reg.requests("", true)
			_, err := c.Pull(t.Context(), ref)
			if got := reg.requests(`^GET /v2/app/manifests/v1$`, false); len(got) != tc.wantGets {
				t.Errorf("manifest requests = %d, want %d", len(got), tc.wantGets)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Pull = %v, want success after retries", err)
				}
				return
			}
			want := "pulling " + ref + ": " + strings.ReplaceAll(tc.wantErr, "HOST", reg.host)
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("Pull = %v, want error starting %q", err, want)
			}
			if !errors.Is(err, ErrUnreachable) {
				t.Errorf("error is not ErrUnreachable")
			}
		})
	}
}

func TestBlobDownloadInterrupted(t *testing.T) {
	reg := newTestRegistry(t)
	img, _ := random.Image(64<<10, 1)
	ref := reg.host + "/app:v1"
	seed, _ := newClient(t, t.TempDir())
	if err := seed.Push(t.Context(), ref, img); err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	layer := m.Layers[0]
	l, _ := img.LayerByDigest(layer.Digest)
	rc, _ := l.Compressed()
	blob, _ := io.ReadAll(rc)

	var cuts atomic.Int32 // how many more downloads of the layer to cut off
	reg.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+layer.Digest.String()) && cuts.Add(-1) >= 0 {
			cutBlob(t, w, blob)
			return true
		}
		return false
	})
	root := t.TempDir()
	c, cs := newClient(t, root, WithRetries(2, time.Millisecond))
	d := digest.Digest(layer.Digest.String())
	ingest := filepath.Join(root, "content", "ingest")

	// Cut more often than the client retries: a clear error and nothing stored.
	cuts.Store(100)
	reg.requests("", true)
	_, err := c.Pull(t.Context(), ref)
	t.Logf("Pull: %v", err)
	want := fmt.Sprintf("pulling %s: layer %s: cannot reach registry %s: connection closed in the middle of a transfer", ref, layer.Digest, reg.host)
	if err == nil || err.Error() != want {
		t.Fatalf("Pull = %v, want %q", err, want)
	}
	if got := reg.requests(`^GET .*/blobs/`+layer.Digest.String(), true); len(got) != 3 {
		t.Errorf("layer downloads = %d, want 3 (1 try + 2 retries)", len(got))
	}
	if cs.Has(d) {
		t.Error("a cut-off layer is in the content store")
	}
	if ents, _ := os.ReadDir(ingest); len(ents) != 0 {
		t.Errorf("ingest files left behind: %v", ents)
	}

	// Cut once: the retry finishes the pull.
	cuts.Store(1)
	if _, err := c.Pull(t.Context(), ref); err != nil {
		t.Fatalf("Pull with one cut = %v, want success", err)
	}
	if got := reg.requests(`^GET .*/blobs/`+layer.Digest.String(), true); len(got) != 2 {
		t.Errorf("layer downloads = %d, want 2", len(got))
	}
	got, err := cs.ReadAll(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(blob) {
		t.Error("stored layer differs from the registry's")
	}
}
