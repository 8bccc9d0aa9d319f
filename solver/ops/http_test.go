package ops

import (
	"crypto/sha512"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/snapshot"
	"github.com/builderdev/builder/internal/testutil"
	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
)

// remoteDeps are Deps with a real content store and snapshotter in temp dirs.
func remoteDeps(t *testing.T) Deps {
	t.Helper()
	testutil.RequiresRoot(t)
	sn, err := snapshot.New(filepath.Join(t.TempDir(), "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	return Deps{Content: testutil.ContentStore(t), Snapshots: sn, TempDir: t.TempDir()}
}

// resolveSource binds a source op to its implementation through Resolver.
func resolveSource(t *testing.T, d Deps, id string, attrs map[string]string) solver.Op {
	t.Helper()
	v, err := llb.NewVertex(&llb.SourceOp{Identifier: id, Attrs: attrs}, nil, llb.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	op, err := Resolver(d)(v)
	if err != nil {
		t.Fatalf("resolving %s: %v", id, err)
	}
	return op
}

// runSource runs a source op as the solver does: key, then exec.
func runSource(t *testing.T, d Deps, id string, attrs map[string]string) (digest.Digest, cache.Ref) {
	t.Helper()
	op := resolveSource(t, d, id, attrs)
	key, err := op.CacheKey(t.Context(), nil)
	if err != nil {
		t.Fatalf("CacheKey of %s: %v", id, err)
	}
	ref, err := op.Exec(t.Context(), nil, io.Discard)
	if err != nil {
		t.Fatalf("Exec of %s: %v", id, err)
	}
	return key, ref
}

// remoteEntry is what tests check of a file in a snapshot.
type remoteEntry struct {
	Mode     fs.FileMode
	Content  string // regular files only
	UID, GID uint32
}

// viewRemoteRef mounts ref's snapshots and returns every entry below the root. mtimes are
// returned apart, for the tests that check them.
func viewRemoteRef(t *testing.T, d Deps, ref cache.Ref) (map[string]remoteEntry, map[string]time.Time) {
	t.Helper()
	root, release, err := d.Snapshots.View(t.Context(), ref.SnapshotIDs())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := release(); err != nil {
			t.Error(err)
		}
	}()
	files := map[string]remoteEntry{}
	mtimes := map[string]time.Time{}
	err = filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := de.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := remoteEntry{Mode: fi.Mode(), UID: st.Uid, GID: st.Gid}
		if fi.Mode().IsRegular() {
			dt, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.Content = string(dt)
		}
		files[rel] = e
		mtimes[rel] = fi.ModTime()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, mtimes
}

// remoteFileServer serves files by path with optional headers and counts requests.
type remoteFileServer struct {
	files map[string]remoteServed
	hits  atomic.Int32
}

type remoteServed struct {
	body    string
	headers map[string]string
	status  int
}

func (s *remoteFileServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	f, ok := s.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	for k, v := range f.headers {
		w.Header().Set(k, v)
	}
	if f.status != 0 {
		w.WriteHeader(f.status)
	}
	io.WriteString(w, f.body)
}

func TestHTTPSource(t *testing.T) {
	d := remoteDeps(t)
	lastMod := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	fsrv := &remoteFileServer{files: map[string]remoteServed{
		"/dir/app.tar.gz": {body: "payload"},
		"/dated":          {body: "dated", headers: map[string]string{"Last-Modified": lastMod.Format(http.TimeFormat)}},
		"/get":            {body: "disposed", headers: map[string]string{"Content-Disposition": `attachment; filename="../../etc/report.txt"`}},
		"/":               {body: "<html>"},
	}}
	srv := httptest.NewServer(fsrv)
	defer srv.Close()
	d.HTTP = srv.Client()
	sum := digest.FromString("payload")

	tests := []struct {
		name      string
		path      string
		attrs     map[string]string
		want      map[string]remoteEntry
		wantMtime time.Time
	}{
		{name: "name from URL", path: "/dir/app.tar.gz", want: map[string]remoteEntry{"app.tar.gz": {Mode: 0o600, Content: "payload"}}, wantMtime: time.Unix(0, 0)},
		{name: "filename attr and perm", path: "/dir/app.tar.gz", attrs: map[string]string{llb.AttrHTTPFilename: "renamed", llb.AttrHTTPPerm: "0755"},
			want: map[string]remoteEntry{"renamed": {Mode: 0o755, Content: "payload"}}},
		{name: "perm without leading zero", path: "/dir/app.tar.gz", attrs: map[string]string{llb.AttrHTTPPerm: "644"},
			want: map[string]remoteEntry{"app.tar.gz": {Mode: 0o644, Content: "payload"}}},
		{name: "checksum", path: "/dir/app.tar.gz", attrs: map[string]string{llb.AttrHTTPChecksum: sum.String()},
			want: map[string]remoteEntry{"app.tar.gz": {Mode: 0o600, Content: "payload"}}},
		{name: "Last-Modified is the mtime", path: "/dated", want: map[string]remoteEntry{"dated": {Mode: 0o600, Content: "dated"}}, wantMtime: lastMod},
		{name: "Content-Disposition names the file", path: "/get", want: map[string]remoteEntry{"report.txt": {Mode: 0o600, Content: "disposed"}}},
		{name: "no path element", path: "/", want: map[string]remoteEntry{"download": {Mode: 0o600, Content: "<html>"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ref := runSource(t, d, srv.URL+tc.path, tc.attrs)
			if len(ref.Layers) != 1 {
				t.Fatalf("got %d layers, want 1", len(ref.Layers))
			}
			if !d.Content.Has(ref.Layers[0].Digest) {
				t.Errorf("layer blob %s is not in the content store", ref.Layers[0].Digest)
			}
			got, mtimes := viewRemoteRef(t, d, ref)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			if !tc.wantMtime.IsZero() {
				for name := range tc.want {
					if !mtimes[name].Equal(tc.wantMtime) {
						t.Errorf("mtime of %s = %v, want %v", name, mtimes[name], tc.wantMtime)
					}
				}
			}
		})
	}
	if entries, err := os.ReadDir(d.TempDir); err != nil || len(entries) != 0 {
		t.Errorf("temp dir holds %v (err %v) after the downloads, want nothing", entries, err)
	}
}

func TestHTTPSourceCacheKey(t *testing.T) {
	d := remoteDeps(t)
	fsrv := &remoteFileServer{files: map[string]remoteServed{
		"/a": {body: "one"},
		"/b": {body: "one"},
	}}
	srv := httptest.NewServer(fsrv)
	defer srv.Close()
	d.HTTP = srv.Client()
	key := func(path string, attrs map[string]string) digest.Digest {
		t.Helper()
		k, err := resolveSource(t, d, srv.URL+path, attrs).CacheKey(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}

	t.Run("pinned key needs no download", func(t *testing.T) {
		before := fsrv.hits.Load()
		sum := digest.FromString("one").String()
		k1 := key("/a", map[string]string{llb.AttrHTTPChecksum: sum})
		if fsrv.hits.Load() != before {
			t.Errorf("CacheKey with a checksum made %d requests, want 0", fsrv.hits.Load()-before)
		}
		if k2 := key("/a", map[string]string{llb.AttrHTTPChecksum: sum, llb.AttrHTTPPerm: "0644"}); k1 == k2 {
			t.Error("the key does not depend on the mode")
		}
	})
	t.Run("key follows content", func(t *testing.T) {
		k1 := key("/a", nil)
		// Another URL with the same content and file name elsewhere: same file, same key.
		fsrv.files["/other/a"] = remoteServed{body: "one"}
		if k2 := key("/other/a", nil); k1 != k2 {
			t.Errorf("same content and name gave keys %s and %s", k1, k2)
		}
		if k3 := key("/b", nil); k1 == k3 {
			t.Error("the key does not depend on the file name")
		}
		fsrv.files["/a"] = remoteServed{body: "two"}
		if k4 := key("/a", nil); k1 == k4 {
			t.Error("the key did not change with the content")
		}
	})
	t.Run("exec reuses the download", func(t *testing.T) {
		fsrv.files["/c"] = remoteServed{body: "three"}
		op := resolveSource(t, d, srv.URL+"/c", nil)
		if _, err := op.CacheKey(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
		before := fsrv.hits.Load()
		ref, err := op.Exec(t.Context(), nil, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if fsrv.hits.Load() != before {
			t.Errorf("Exec downloaded again (%d requests)", fsrv.hits.Load()-before)
		}
		if got, _ := viewRemoteRef(t, d, ref); got["c"].Content != "three" {
			t.Errorf("file c = %q, want three", got["c"].Content)
		}
	})
}

func TestHTTPSourceChecksumAlgorithms(t *testing.T) {
	d := remoteDeps(t)
	srv := httptest.NewServer(&remoteFileServer{files: map[string]remoteServed{"/f": {body: "data"}}})
	defer srv.Close()
	d.HTTP = srv.Client()
	sum := sha512.Sum512([]byte("data"))
	_, ref := runSource(t, d, srv.URL+"/f", map[string]string{llb.AttrHTTPChecksum: fmt.Sprintf("sha512:%x", sum)})
	if got, _ := viewRemoteRef(t, d, ref); got["f"].Content != "data" {
		t.Errorf("file f = %q, want data", got["f"].Content)
	}
}

func TestHTTPSourceErrors(t *testing.T) {
	d := remoteDeps(t)
	srv := httptest.NewServer(&remoteFileServer{files: map[string]remoteServed{
		"/f":      {body: "data"},
		"/broken": {body: "oops", status: http.StatusInternalServerError},
	}})
	defer srv.Close()
	d.HTTP = srv.Client()
	wrong := digest.FromString("other")

	tests := []struct {
		name  string
		url   string
		attrs map[string]string
		says  []string
	}{
		{name: "not found", url: srv.URL + "/missing", says: []string{srv.URL + "/missing", "404"}},
		{name: "server error", url: srv.URL + "/broken", says: []string{srv.URL + "/broken", "500"}},
		{name: "checksum mismatch", url: srv.URL + "/f", attrs: map[string]string{llb.AttrHTTPChecksum: wrong.String()},
			says: []string{srv.URL + "/f", wrong.String(), digest.FromString("data").String()}},
		{name: "unreachable", url: "http://127.0.0.1:1/x", says: []string{"127.0.0.1:1/x"}},
		{name: "password is hidden", url: "http://alice:hunter2@127.0.0.1:1/x", says: []string{"xxxxx:xxxxx@127.0.0.1:1/x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			op := resolveSource(t, d, tc.url, tc.attrs)
			// With a checksum the key is computed offline; the error comes from Exec.
			_, err := op.CacheKey(t.Context(), nil)
			if err == nil {
				_, err = op.Exec(t.Context(), nil, io.Discard)
			}
			if err == nil {
				t.Fatal("succeeded, want error")
			}
			t.Logf("error: %v", err)
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "alice") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}

	t.Run("bad attributes", func(t *testing.T) {
		for _, attrs := range []map[string]string{
			{llb.AttrHTTPPerm: "rwx"},
			{llb.AttrHTTPPerm: "0999"},
			{llb.AttrHTTPChecksum: "md5:abc"},
		} {
			v, err := llb.NewVertex(&llb.SourceOp{Identifier: srv.URL + "/f", Attrs: attrs}, nil, llb.Meta{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Resolver(d)(v); err == nil {
				t.Errorf("attrs %v accepted, want error", attrs)
			}
		}
	})
}

func TestHTTPFileName(t *testing.T) {
	resp := func(cd string) *http.Response {
		return &http.Response{Header: http.Header{"Content-Disposition": {cd}}}
	}
	tests := []struct {
		name, url, attr string
		resp            *http.Response
		want            string
	}{
		{name: "attr wins", url: "http://h/a/b.txt", attr: "c.txt", resp: resp(`attachment; filename="d.txt"`), want: "c.txt"},
		{name: "attr is a base name", url: "http://h/", attr: "../../x", want: "x"},
		{name: "disposition", url: "http://h/a/b.txt", resp: resp(`attachment; filename="d.txt"`), want: "d.txt"},
		{name: "disposition dir ignored", url: "http://h/a/b.txt", resp: resp(`attachment; filename="d/"`), want: "b.txt"},
		{name: "bad disposition ignored", url: "http://h/a/b.txt", resp: resp(`;;;`), want: "b.txt"},
		{name: "url base", url: "http://h/a/b.txt?x=1", want: "b.txt"},
		{name: "trailing slash", url: "http://h/a/", want: "a"},
		{name: "root", url: "http://h/", want: "download"},
		{name: "no path", url: "http://h", want: "download"},
		{name: "control char", url: "http://h/a%01b", want: "download"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fileNameFor(tc.url, tc.attr, tc.resp); got != tc.want {
				t.Errorf("fileNameFor(%q, %q) = %q, want %q", tc.url, tc.attr, got, tc.want)
			}
		})
	}
}
