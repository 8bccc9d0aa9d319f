package cache

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

func TestIndexRoundTripAndMisses(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	gone := digest.FromString("pruned")
	x, err := OpenIndex(t.TempDir(), func(l Layer) bool { return l.Digest != gone })
	if err != nil {
		t.Fatal(err)
	}
	key := digest.FromString("key")
	if _, ok, err := x.Get(ctx, key); ok || err != nil {
		t.Fatalf("empty index Get = %v, %v", ok, err)
	}
	ref := Ref{Layers: []Layer{{DiffID: digest.FromString("d"), Digest: digest.FromString("b"), Size: 3}}}
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := x.Put(ctx, key, Record{Ref: ref, Created: created}); err != nil {
		t.Fatal(err)
	}
	rec, ok, err := x.Get(ctx, key)
	if !ok || err != nil || len(rec.Ref.Layers) != 1 || rec.Ref.Layers[0] != ref.Layers[0] || !rec.Created.Equal(created) {
		t.Errorf("Get = %+v, %v, %v", rec, ok, err)
	}

	// A record naming a layer that is no longer present is a miss.
	key2 := digest.FromString("key2")
	x.Put(ctx, key2, Record{Ref: Ref{Layers: []Layer{{Digest: gone}}}})
	if _, ok, _ := x.Get(ctx, key2); ok {
		t.Error("record with a missing layer was a hit")
	}
	// A corrupt record (e.g. a torn write on another filesystem) is a miss, not an error.
	if err := os.WriteFile(x.path(key), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := x.Get(ctx, key); ok || err != nil {
		t.Errorf("corrupt record: ok=%v err=%v, want a plain miss", ok, err)
	}
	if _, _, err := x.Get(ctx, "sha256:../../x"); err == nil {
		t.Error("invalid key accepted")
	}
}

func TestIndexList(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	gone := digest.FromString("pruned")
	x, err := OpenIndex(dir, func(l Layer) bool { return l.Digest != gone })
	if err != nil {
		t.Fatal(err)
	}
	a, b, bad := digest.FromString("a"), digest.FromString("b"), digest.FromString("bad")
	x.Put(ctx, a, Record{Ref: Ref{Layers: []Layer{{Digest: digest.FromString("x")}}}})
	x.Put(ctx, b, Record{Ref: Ref{Layers: []Layer{{Digest: gone}}}})
	if err := os.WriteFile(x.path(bad), []byte("{torn"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, junk := range []string{".sha256-abc.json.tmp-1", "notes.txt", "sha256-zz.json"} {
		if err := os.WriteFile(filepath.Join(dir, junk), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before, err := os.Stat(x.path(a))
	if err != nil {
		t.Fatal(err)
	}
	got, err := x.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[a].Ref.Layers[0].Digest != digest.FromString("x") || got[b].Ref.Layers[0].Digest != gone {
		t.Fatalf("List = %+v, want records a and b (b's layer is gone but it still refers to it)", got)
	}
	after, _ := os.Stat(x.path(a))
	if !after.ModTime().Equal(before.ModTime()) {
		t.Error("List touched a record's last-used time")
	}
}

func TestIndexDelete(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	x, err := OpenIndex(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	k := digest.FromString("k")
	if err := x.Put(ctx, k, Record{}); err != nil {
		t.Fatal(err)
	}
	if err := x.Delete(ctx, k); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := x.Get(ctx, k); ok {
		t.Fatal("record still there after Delete")
	}
	if err := x.Delete(ctx, k); err != nil {
		t.Fatalf("deleting a missing record: %v", err)
	}
	if err := x.Delete(ctx, "sha256:nope"); err == nil {
		t.Fatal("Delete accepted an invalid key")
	}
}
