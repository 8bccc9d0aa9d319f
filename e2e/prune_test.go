//go:build linux

package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// snapshotIDs lists the committed snapshots of root.
func snapshotIDs(t *testing.T, root string) map[string]bool {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(root, "snapshots", "layers"))
	out := map[string]bool{}
	for _, e := range ents {
		out[e.Name()] = true
	}
	return out
}

// imageDiffIDs returns the layer diff ids of an image in the store, as snapshot names.
func imageDiffIDs(t *testing.T, root, ref string) []string {
	t.Helper()
	var docs []struct {
		RootFS struct{ Layers []string }
	}
	if err := json.Unmarshal([]byte(mustBuilder(t, root, "inspect", ref).stdout), &docs); err != nil || len(docs) != 1 {
		t.Fatalf("inspect %s: %v", ref, err)
	}
	var out []string
	for _, l := range docs[0].RootFS.Layers {
		out = append(out, strings.TrimPrefix(l, "sha256:"))
	}
	return out
}

func storeSize(t *testing.T, root string) int64 {
	t.Helper()
	dt, err := exec.Command("du", "-sxB1", root).Output()
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.Fields(string(dt))[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPrune(t *testing.T) {
	root := newRoot(t)
	ctxA := writeContext(t, map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN echo a > /a\nRUN echo a2 > /a2\n"})
	ctxB := writeContext(t, map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN --mount=type=cache,target=/c echo b > /b && echo kept > /c/f\n"})
	mustBuilder(t, root, "build", "-t", "prune/a", ctxA)
	mustBuilder(t, root, "build", ctxB) // only in the build cache
	records := countFiles(t, filepath.Join(root, "cache"))

	out := mustBuilder(t, root, "du", "-v").stdout
	if n := strings.Count(out, "cache record"); n < records {
		t.Errorf("du -v lists %d cache records, want %d:\n%s", n, records, out)
	}
	checkDu(t, root)

	// Recent use is kept.
	mustBuilder(t, root, "prune", "-f", "--filter", "until=1h")
	if n := countFiles(t, filepath.Join(root, "cache")); n != records {
		t.Errorf("prune --filter until=1h removed %d records used just now", records-n)
	}
	// Without -f nothing happens unless confirmed.
	cmd := exec.Command(builderBin, "--root", root, "prune", "--all")
	cmd.Stdin = strings.NewReader("n\n")
	if err := cmd.Run(); err != nil || countFiles(t, filepath.Join(root, "cache")) != records {
		t.Errorf("unconfirmed prune: %v, records %d → %d", err, records, countFiles(t, filepath.Join(root, "cache")))
	}

	// Default prune: B's records go, A's (whose layers the image uses) stay.
	r := mustBuilder(t, root, "prune", "-f")
	if !strings.Contains(r.stdout, "Total reclaimed space: ") || strings.Contains(r.stdout, "space: 0B") {
		t.Errorf("prune printed %q, want reclaimed space", r.stdout)
	}
	if st := stepStatus(t, mustBuilder(t, root, "build", "--progress=plain", "-t", "prune/a", ctxA).stderr); st["RUN echo a2 > /a2"] != "CACHED" {
		t.Errorf("after prune, the image's steps are not cached: %v", st)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "cache-mounts")); len(ents) != 0 {
		t.Errorf("prune left %d unused cache mounts", len(ents))
	}

	// prune --all: only the image's layers (and the base image's, remembered) remain.
	mustBuilder(t, root, "build", ctxB)
	mustBuilder(t, root, "prune", "--all", "-f")
	if n := countFiles(t, filepath.Join(root, "cache")); n != 0 {
		t.Errorf("prune --all left %d cache records", n)
	}
	want := imageDiffIDs(t, root, "prune/a")
	got := snapshotIDs(t, root)
	if len(got) != len(want) {
		t.Errorf("prune --all left snapshots %v, want the image's %v", got, want)
	}
	for _, id := range want {
		if !got[id] {
			t.Errorf("prune --all removed snapshot %s of the image", id)
		}
	}
	if out := mustBuilder(t, root, "run", "--rm", "prune/a", "cat", "/a", "/a2").stdout; out != "a\na2\n" {
		t.Errorf("image after prune --all: %q", out)
	}
	checkDu(t, root)

	// Rebuilds run their steps again and succeed.
	for _, c := range []string{ctxA, ctxB} {
		r := mustBuilder(t, root, "build", "--progress=plain", c)
		if !strings.Contains(r.stderr, "DONE") {
			t.Errorf("rebuild after prune --all ran nothing:\n%s", r.stderr)
		}
	}
}

// A prune started while a build runs on the same root waits for it; the build's
// image is complete.
func TestPruneWhileBuilding(t *testing.T) {
	root := newRoot(t)
	// Cache to prune, made first.
	mustBuilder(t, root, "build", writeContext(t, map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN echo old > /old\n"}))
	slow := writeContext(t, map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN echo one > /one\nRUN sleep 3 && echo two > /two\nRUN cat /one /two > /both\n"})
	build := exec.Command(builderBin, "--root", root, "build", "--progress=plain", "-t", "prune/slow", slow)
	var bout bytes.Buffer
	build.Stdout, build.Stderr = &bout, &bout
	if err := build.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // in the sleep by now
	start := time.Now()
	r := mustBuilder(t, root, "prune", "--all", "-f")
	pruned := time.Now()
	if err := build.Wait(); err != nil {
		t.Fatalf("build during prune: %v\n%s", err, bout.String())
	}
	built := time.Now()
	if !strings.Contains(r.stderr, "waiting for the builds") || pruned.Before(built.Add(-500*time.Millisecond)) {
		t.Errorf("prune did not wait for the build (prune took %s): %s", pruned.Sub(start), r.stderr)
	}
	if out := mustBuilder(t, root, "run", "--rm", "prune/slow", "cat", "/both").stdout; out != "one\ntwo\n" {
		t.Errorf("image built during prune: %q", out)
	}
	mustBuilder(t, root, "save", "-o", filepath.Join(t.TempDir(), "slow.tar"), "prune/slow")
}

// --keep-storage removes the least recently used cache until the store fits.
func TestPruneKeepStorage(t *testing.T) {
	root := newRoot(t)
	for _, n := range []string{"1", "2", "3"} {
		ctx := writeContext(t, map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN head -c 3000000 /dev/urandom > /f" + n + "\n"})
		mustBuilder(t, root, "build", ctx)
	}
	before := storeSize(t, root)
	records := countFiles(t, filepath.Join(root, "cache"))
	limit := before - 4_000_000 // one or two of the three big layers must go
	mustBuilder(t, root, "prune", "-f", "--keep-storage", strconv.FormatInt(limit, 10))
	after := storeSize(t, root)
	if after > limit {
		t.Errorf("store takes %d bytes after prune --keep-storage %d (before %d)", after, limit, before)
	}
	if n := countFiles(t, filepath.Join(root, "cache")); n == 0 || n >= records {
		t.Errorf("prune --keep-storage left %d of %d records, want some removed, not all", n, records)
	}
	// A limit already met removes nothing.
	mustBuilder(t, root, "prune", "-f", "--keep-storage", "100GB")
	if a := storeSize(t, root); a != after {
		t.Errorf("prune with a met limit changed the store: %d → %d", after, a)
	}
}
