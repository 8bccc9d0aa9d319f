package registry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// testRegistry is go-containerregistry's in-process registry with three additions the
// tests need: blobs belong to repositories (so a HEAD in one repository does not see
// another's blobs), cross-repository mounts (POST .../uploads/?mount=D&from=R), and a
// log of every request plus a hook that may answer a request itself (auth, faults).
type testRegistry struct {
	host string
	srv  *httptest.Server

	mu    sync.Mutex
	blobs map[string]map[string][]byte // repository → digest → content
	reqs  []string                     // "METHOD /path?query"
	hook  func(w http.ResponseWriter, r *http.Request) bool
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	tr := &testRegistry{blobs: map[string]map[string][]byte{}}
	reg := ggcrregistry.New(
		ggcrregistry.Logger(log.New(io.Discard, "", 0)),
		ggcrregistry.WithBlobHandler(repoBlobs{tr}),
	)
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		tr.reqs = append(tr.reqs, r.Method+" "+r.URL.RequestURI())
		hook := tr.hook
		tr.mu.Unlock()
		if hook != nil && hook(w, r) {
			return
		}
		if tr.mount(w, r) {
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.srv.Close)
	tr.host = strings.TrimPrefix(tr.srv.URL, "http://")
	return tr
}

// setHook installs h (nil removes it).
func (tr *testRegistry) setHook(h func(w http.ResponseWriter, r *http.Request) bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.hook = h
}

// requests returns the requests seen so far whose "METHOD /path?query" matches re,
// and forgets all requests if reset.
func (tr *testRegistry) requests(re string, reset bool) []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	rx := regexp.MustCompile(re)
	var out []string
	for _, r := range tr.reqs {
		if rx.MatchString(r) {
			out = append(out, r)
		}
	}
	if reset {
		tr.reqs = nil
	}
	return out
}

func (tr *testRegistry) has(repo string, h v1.Hash) bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	_, ok := tr.blobs[repo][h.String()]
	return ok
}

var mountPath = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/?$`)

// mount answers a cross-repository mount request when the source repository has the
// blob; otherwise the registry starts a normal upload, as the spec says.
func (tr *testRegistry) mount(w http.ResponseWriter, r *http.Request) bool {
	m := mountPath.FindStringSubmatch(r.URL.Path)
	q := r.URL.Query()
	if r.Method != http.MethodPost || m == nil || q.Get("mount") == "" || q.Get("from") == "" {
		return false
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	dt, ok := tr.blobs[q.Get("from")][q.Get("mount")]
	if !ok {
		return false
	}
	if tr.blobs[m[1]] == nil {
		tr.blobs[m[1]] = map[string][]byte{}
	}
	tr.blobs[m[1]][q.Get("mount")] = dt
	w.Header().Set("Location", "/v2/"+m[1]+"/blobs/"+q.Get("mount"))
	w.Header().Set("Docker-Content-Digest", q.Get("mount"))
	w.WriteHeader(http.StatusCreated)
	return true
}

// repoBlobs is the registry's blob storage, kept per repository.
type repoBlobs struct{ tr *testRegistry }

// repoName undoes a quirk of the registry: for an upload it names the repository with
// "/blobs" appended.
func repoName(repo string) string { return strings.TrimSuffix(repo, "/blobs") }

func (b repoBlobs) Get(_ context.Context, repo string, h v1.Hash) (io.ReadCloser, error) {
	b.tr.mu.Lock()
	defer b.tr.mu.Unlock()
	dt, ok := b.tr.blobs[repoName(repo)][h.String()]
	if !ok {
		return nil, ggcrregistry.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(dt)), nil
}

func (b repoBlobs) Stat(_ context.Context, repo string, h v1.Hash) (int64, error) {
	b.tr.mu.Lock()
	defer b.tr.mu.Unlock()
	dt, ok := b.tr.blobs[repoName(repo)][h.String()]
	if !ok {
		return 0, ggcrregistry.ErrNotFound
	}
	return int64(len(dt)), nil
}

func (b repoBlobs) Put(_ context.Context, repo string, h v1.Hash, rc io.ReadCloser) error {
	defer rc.Close()
	dt, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	b.tr.mu.Lock()
	defer b.tr.mu.Unlock()
	if b.tr.blobs[repoName(repo)] == nil {
		b.tr.blobs[repoName(repo)] = map[string][]byte{}
	}
	b.tr.blobs[repoName(repo)][h.String()] = dt
	return nil
}

// requireBasicAuth is a hook that wants user:password on every request, like a
// registry with an htpasswd file.
func requireBasicAuth(user, password string) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == user && p == password {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return true
	}
}

// cutBlob answers a GET of blob dt by sending its headers and half its bytes, then
// closing the connection.
func cutBlob(t *testing.T, w http.ResponseWriter, dt []byte) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		t.Error("response writer cannot be hijacked")
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", len(dt))
	buf.Write(dt[:len(dt)/2])
	buf.Flush()
}
