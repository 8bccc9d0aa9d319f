//go:build linux

package e2e

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// blobProxy is a reverse proxy in front of the test registry that records the blob
// digests fetched through it.
type blobProxy struct {
	host  string
	mu    sync.Mutex
	blobs []string
}

func startBlobProxy(t *testing.T) *blobProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blobProxy{host: l.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: registry})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := strings.Index(r.URL.Path, "/blobs/sha256:"); i >= 0 && r.Method == http.MethodGet {
			p.mu.Lock()
			p.blobs = append(p.blobs, r.URL.Path[i+len("/blobs/"):])
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return p
}

func (p *blobProxy) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.blobs
	p.blobs = nil
	return out
}

// layerFetches are the fetched blobs that are not JSON (configs, manifests): layers.
func layerFetches(t *testing.T, root string, fetched []string) []string {
	t.Helper()
	var layers []string
	for _, d := range fetched {
		alg, hex, _ := strings.Cut(d, ":")
		dt, err := os.ReadFile(filepath.Join(root, "content", "blobs", alg, hex))
		if err != nil || len(dt) == 0 || dt[0] != '{' {
			layers = append(layers, d)
		}
	}
	return layers
}

const teamDockerfile = `FROM {{BASE}}
COPY a.txt /a.txt
RUN cat /a.txt > /a.copy
COPY b.txt /b.txt
RUN cat /b.txt > /b.copy && echo run > /ran
CMD ["cat", "/b.copy"]
`

var teamRuns = []string{"RUN cat /a.txt > /a.copy", "RUN cat /b.txt > /b.copy && echo run > /ran"}

func teamContext(t *testing.T, base, b string) string {
	dir := writeContext(t, map[string]string{"Dockerfile": strings.ReplaceAll(teamDockerfile, "{{BASE}}", base), "a.txt": "a\n", "b.txt": b})
	return dir
}

func TestTeamCacheRegistry(t *testing.T) {
	px := startBlobProxy(t)
	base := px.host + "/busybox:latest"
	cacheRef := px.host + "/e2e/teamcache:main"
	localCache := filepath.Join(t.TempDir(), "cache")

	// Runner A builds and exports everything.
	rootA := newRoot(t)
	a := mustBuilder(t, rootA, "build", "--progress=plain",
		"--cache-to", "type=registry,ref="+cacheRef+",mode=max",
		"--cache-to", "type=local,dest="+localCache+",mode=max",
		teamContext(t, base, "b\n"))
	for _, s := range teamRuns {
		if st := stepStatus(t, a.stderr)[s]; st != "DONE" {
			t.Fatalf("runner A: %q ended %q, want DONE:\n%s", s, st, a.stderr)
		}
	}

	// Runner B: empty root, another context directory written later (other paths and
	// mtimes): every step hits the imported cache and no layer blob is downloaded.
	px.take()
	rootB := newRoot(t)
	ctxB := teamContext(t, base, "b\n")
	b := mustBuilder(t, rootB, "build", "--progress=plain", "--cache-from", "type=registry,ref="+cacheRef, ctxB)
	st := stepStatus(t, b.stderr)
	for _, s := range append([]string{"COPY a.txt /a.txt", "COPY b.txt /b.txt"}, teamRuns...) {
		if st[s] != "CACHED" {
			t.Errorf("runner B: %q ended %q, want CACHED:\n%s", s, st[s], b.stderr)
		}
	}
	if l := layerFetches(t, rootB, px.take()); len(l) != 0 {
		t.Errorf("runner B downloaded %d layer blobs, want 0: %v", len(l), l)
	}

	// A missing cache is a warning; a second --cache-from is still used.
	b2 := mustBuilder(t, newRoot(t), "build", "--progress=plain",
		"--cache-from", "type=registry,ref="+px.host+"/e2e/nothing:here",
		"--cache-from", "type=local,src="+localCache, ctxB)
	if !strings.Contains(b2.stderr, "warning: importing cache") {
		t.Errorf("no warning for a missing cache:\n%s", b2.stderr)
	}
	for _, s := range teamRuns {
		if st := stepStatus(t, b2.stderr)[s]; st != "CACHED" {
			t.Errorf("local cache: %q ended %q, want CACHED:\n%s", s, st, b2.stderr)
		}
	}

	// Changing b.txt on runner B re-runs only the steps after COPY b.txt; the image it
	// tags is complete (its layers, remote until now, are fetched for the store).
	if err := os.WriteFile(filepath.Join(ctxB, "b.txt"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	px.take()
	c := mustBuilder(t, rootB, "build", "--progress=plain", "-t", "team:changed", "--cache-from", "type=registry,ref="+cacheRef, ctxB)
	st = stepStatus(t, c.stderr)
	want := map[string]string{"COPY a.txt /a.txt": "CACHED", teamRuns[0]: "CACHED", "COPY b.txt /b.txt": "DONE", teamRuns[1]: "DONE"}
	for s, w := range want {
		if st[s] != w {
			t.Errorf("changed b.txt: %q ended %q, want %s:\n%s", s, st[s], w, c.stderr)
		}
	}
	if l := layerFetches(t, rootB, px.take()); len(l) == 0 {
		t.Error("the build that ran steps downloaded no layer; the count cannot be trusted")
	}
	out := mustBuilder(t, rootB, "run", "team:changed")
	if !strings.Contains(out.stdout, "changed") {
		t.Errorf("run team:changed printed %q, want the changed b.txt", out.stdout)
	}
}

func TestTeamCacheInline(t *testing.T) {
	base := baseImage
	img := registry + "/e2e/inline:1"
	rootA := newRoot(t)
	mustBuilder(t, rootA, "build", "--progress=plain", "--cache-to", "type=inline",
		"--output", "type=image,name="+img+",push=true", teamContext(t, base, "inline\n"))
	rootB := newRoot(t)
	b := mustBuilder(t, rootB, "build", "--progress=plain", "--cache-from", img, teamContext(t, base, "inline\n"))
	for _, s := range teamRuns {
		if st := stepStatus(t, b.stderr)[s]; st != "CACHED" {
			t.Errorf("inline cache: %q ended %q, want CACHED:\n%s", s, st, b.stderr)
		}
	}
}

func TestTeamCacheMounts(t *testing.T) {
	const run = "RUN --mount=type=cache,target=/cache sh -c 'echo A >> /cache/log; cat /cache/log > /seen'"
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM {{BASE}}\n" + run + "\n"})
	cacheDir := filepath.Join(t.TempDir(), "cache")
	seen := func(t *testing.T, root string, args ...string) string {
		t.Helper()
		out := filepath.Join(t.TempDir(), "fs")
		mustBuilder(t, root, append(append([]string{"build", "--progress=plain", "--no-cache", "--output", "type=local,dest=" + out}, args...), ctxDir)...)
		dt, err := os.ReadFile(filepath.Join(out, "seen"))
		if err != nil {
			t.Fatal(err)
		}
		return string(dt)
	}

	// Runner A: one line in its cache mount, exported with the cache.
	rootA := newRoot(t)
	if got := seen(t, rootA, "--cache-to", "type=local,dest="+cacheDir+",mode=max,cache-mounts=true"); got != "A\n" {
		t.Fatalf("runner A saw %q, want one line", got)
	}
	// Runner B, empty, imports it: its RUN (forced by --no-cache) sees A's line.
	rootB := newRoot(t)
	if got := seen(t, rootB, "--cache-from", "type=local,src="+cacheDir); got != "A\nA\n" {
		t.Errorf("runner B saw %q, want runner A's line and its own", got)
	}
	// B's own cache mount is never overwritten by a later import.
	if got := seen(t, rootB, "--cache-from", "type=local,src="+cacheDir); got != "A\nA\nA\n" {
		t.Errorf("runner B's second build saw %q, want three lines (its cache kept)", got)
	}
	// Without cache-mounts=true nothing travels; a cap below the mount's size skips it
	// with a warning.
	plain := filepath.Join(t.TempDir(), "plain")
	seen(t, rootA, "--cache-to", "type=local,dest="+plain+",mode=max")
	if got := seen(t, newRoot(t), "--cache-from", "type=local,src="+plain); got != "A\n" {
		t.Errorf("import of a cache without mounts saw %q, want a fresh cache", got)
	}
	capped := filepath.Join(t.TempDir(), "capped")
	r := mustBuilder(t, rootA, "build", "--progress=plain", "--no-cache",
		"--cache-to", "type=local,dest="+capped+",cache-mounts=true,cache-mounts-max-size=2", ctxDir)
	if !strings.Contains(r.stderr, "warning: skipping cache mount") {
		t.Errorf("no warning for a cache mount over the cap:\n%s", r.stderr)
	}
	if got := seen(t, newRoot(t), "--cache-from", "type=local,src="+capped); got != "A\n" {
		t.Errorf("import of a capped cache saw %q, want a fresh cache", got)
	}
}
