package cli

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/internal/testutil"
)

// fakeLayer stores a blob of n bytes and a snapshot holding as much, as a build step
// would, and returns the layer naming them.
func fakeLayer(t *testing.T, st *store, name string, n int) cache.Layer {
	t.Helper()
	ctx := t.Context()
	dt := []byte(strings.Repeat(name, n/len(name)+1)[:n])
	d, err := st.content.WriteBytes(ctx, dt)
	if err != nil {
		t.Fatal(err)
	}
	l := cache.Layer{DiffID: digest.FromString("diff " + name), Digest: d, Size: int64(n), MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"}
	a, err := st.snapshots.Ingest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.UpperDir(), name), dt, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(ctx, cache.SnapshotID(l.DiffID)); err != nil {
		t.Fatal(err)
	}
	return l
}

// putRecord records layers under key, last used age ago.
func putRecord(t *testing.T, st *store, key string, age time.Duration, layers ...cache.Layer) digest.Digest {
	t.Helper()
	k := digest.FromString(key)
	if err := st.index.Put(t.Context(), k, cache.Record{Ref: cache.Ref{Layers: layers}}); err != nil {
		t.Fatal(err)
	}
	when := time.Now().Add(-age)
	if err := os.Chtimes(st.index.Path(k), when, when); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestPruneRules checks prune against a store: images keep their layers and, without
// --all, their records; records above a kept record keep its layers.
func TestPruneRules(t *testing.T) {
	testutil.RequiresRoot(t) // openStore prepares the sandbox state dir
	root := t.TempDir()
	rootfs := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(rootfs, rootfsTar(t, map[string]string{"etc/hello": "hi\n"}), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCmd(t, root, nil, "import", rootfs, "base:1")
	st, err := openStore(t.Context(), root)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := st.images.List(t.Context())
	if err != nil || len(recs) != 1 {
		t.Fatalf("images: %v %v", recs, err)
	}
	c, err := st.images.Contents(t.Context(), recs[0])
	if err != nil {
		t.Fatal(err)
	}
	base := c.Layers[0]
	old, mid, recent := fakeLayer(t, st, "old", 50_000), fakeLayer(t, st, "mid", 50_000), fakeLayer(t, st, "recent", 50_000)
	kBase := putRecord(t, st, "base", 72*time.Hour, base)
	kOld := putRecord(t, st, "old", 48*time.Hour, base, old)
	kMid := putRecord(t, st, "mid", 30*time.Hour, base, old, mid)
	kRecent := putRecord(t, st, "recent", time.Minute, base, recent)

	exists := func(l cache.Layer) bool {
		return st.content.Has(l.Digest) && st.snapshots.Exists(cache.SnapshotID(l.DiffID))
	}
	hasRecord := func(k digest.Digest) bool { _, err := os.Stat(st.index.Path(k)); return err == nil }

	// until=24h: old and mid go (old's layer with them), recent stays, and the
	// record of the image's layer stays without --all.
	mustCmd(t, root, nil, "prune", "-f", "--filter", "until=24h")
	for k, want := range map[digest.Digest]bool{kBase: true, kOld: false, kMid: false, kRecent: true} {
		if hasRecord(k) != want {
			t.Errorf("record %s kept = %v, want %v", k, !want, want)
		}
	}
	if exists(old) || exists(mid) || !exists(recent) || !st.content.Has(base.Digest) {
		t.Errorf("layers after prune until=24h: old %v mid %v recent %v base %v", exists(old), exists(mid), exists(recent), st.content.Has(base.Digest))
	}

	// --all: every record goes; the image keeps its blob.
	mustCmd(t, root, nil, "prune", "-f", "--all")
	if n := countRecords(t, root); n != 0 || exists(recent) || !st.content.Has(base.Digest) {
		t.Errorf("after prune --all: %d records, recent layer %v, image blob %v", n, exists(recent), st.content.Has(base.Digest))
	}
	mustCmd(t, root, nil, "rmi", "base:1") // the image's blobs go with it: nothing else uses them
	if st.content.Has(base.Digest) {
		t.Error("rmi left the image's blob although no cache record uses it")
	}
}

func countRecords(t *testing.T, root string) int {
	ents, err := os.ReadDir(filepath.Join(root, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestAutoGC checks the automatic collection: LRU down to the limit, nothing while
// another process uses the root, nothing under the limit.
func TestAutoGC(t *testing.T) {
	testutil.RequiresRoot(t)
	root := t.TempDir()
	st, err := openStore(t.Context(), root)
	if err != nil {
		t.Fatal(err)
	}
	var keys []digest.Digest
	var layers []cache.Layer
	for i, name := range []string{"aaaa", "bbbb", "cccc"} {
		l := fakeLayer(t, st, name, 200_000)
		layers = append(layers, l)
		keys = append(keys, putRecord(t, st, name, time.Duration(3-i)*time.Hour, l))
	}
	var log strings.Builder
	if err := st.autoGC(t.Context(), "100GB", &log); err != nil || countRecords(t, root) != 3 {
		t.Fatalf("autoGC under the limit: %v, %d records left", err, countRecords(t, root))
	}
	if _, err := os.Stat(filepath.Join(root, gcStateName)); err != nil {
		t.Errorf("autoGC kept no measurement: %v", err)
	}

	// Another builder process on the root: autoGC leaves everything.
	stop := holdLease(t, root)
	if err := st.autoGC(t.Context(), "1", &log); err != nil || countRecords(t, root) != 3 {
		t.Fatalf("autoGC while another process uses the root: %v, %d records left", err, countRecords(t, root))
	}
	stop()

	u, err := st.use(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	// Each layer frees about 400 kB (blob and snapshot): the two least recently used go.
	limit := u.total - 500_000
	if err := st.autoGC(t.Context(), strconv.FormatInt(limit, 10), &log); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		_, err := os.Stat(st.index.Path(k))
		if kept := err == nil; kept != (i == 2) || st.content.Has(layers[i].Digest) != (i == 2) {
			t.Errorf("record %d kept = %v, blob kept = %v; want only the most recently used", i, kept, st.content.Has(layers[i].Digest))
		}
	}
	if !strings.Contains(log.String(), "garbage collection: removed 2 cache records") {
		t.Errorf("autoGC log = %q", log.String())
	}
	if u, _ := st.use(t.Context(), true); u.total > limit {
		t.Errorf("store takes %d after autoGC, limit %d", u.total, limit)
	}
}

// holdLease starts another process that holds the root's shared gc lock, as a running
// build does, until the returned func is called.
func holdLease(t *testing.T, root string) func() {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 holds the lock in another process")
	}
	cmd := exec.CommandContext(context.Background(), py, "-c", `import fcntl,sys
f=open(sys.argv[1],"a+")
fcntl.lockf(f,fcntl.LOCK_SH)
print("held",flush=True)
sys.stdin.read()`, filepath.Join(root, "gc.lock"))
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "held\n" {
		t.Fatalf("lock holder said %q", line)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			in.Close()
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	return stop
}
