package fscopy

import (
	"os"
	"path/filepath"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

func TestFileStatCachePersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "statcache")
	k1 := StatKey{Path: "/ctx/a", Size: 1, Mtime: 2, Ctime: 3, Ino: 4, Dev: 5}
	k2 := StatKey{Path: "/ctx/b", Size: 1, Mtime: 2, Ctime: 3, Ino: 6, Dev: 5}
	d1, d2 := digest.FromString("a"), digest.FromString("b")

	c := OpenFileStatCache(path, 10)
	if _, ok := c.Get(k1); ok {
		t.Fatal("hit in a cache that was never saved")
	}
	c.Put(k1, d1)
	c.Put(k2, d2)
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}

	c2 := OpenFileStatCache(path, 10)
	if d, ok := c2.Get(k1); !ok || d != d1 {
		t.Fatalf("after reload Get(k1) = %s, %v", d, ok)
	}
	changed := k2
	changed.Ctime++
	if _, ok := c2.Get(changed); ok {
		t.Fatal("a changed ctime hit")
	}
	if c2.Len() != 2 {
		t.Fatalf("Len = %d, want 2", c2.Len())
	}
}

func TestFileStatCacheKeepsUsedEntriesFirst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "statcache")
	c := OpenFileStatCache(path, 100)
	var keys []StatKey
	for i := range 5 {
		k := StatKey{Path: "/f", Ino: uint64(i)}
		keys = append(keys, k)
		c.Put(k, digest.FromString(string(rune('a'+i))))
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	// The next process uses keys[4] and learns one new file, with room for two entries.
	c2 := OpenFileStatCache(path, 2)
	if _, ok := c2.Get(keys[4]); !ok {
		t.Fatal("miss on a saved key")
	}
	fresh := StatKey{Path: "/new"}
	c2.Put(fresh, digest.FromString("new"))
	if err := c2.Save(); err != nil {
		t.Fatal(err)
	}
	c3 := OpenFileStatCache(path, 100)
	if c3.Len() != 2 {
		t.Fatalf("saved %d entries, want the limit 2", c3.Len())
	}
	if _, ok := c3.Get(keys[4]); !ok {
		t.Fatal("the entry the last build used was dropped")
	}
	if _, ok := c3.Get(fresh); !ok {
		t.Fatal("the entry the last build added was dropped")
	}
}

func TestFileStatCacheIgnoresBadFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "statcache")
	if err := os.WriteFile(path, []byte("not gob"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := OpenFileStatCache(path, 10)
	if c.Len() != 0 {
		t.Fatalf("a corrupt file loaded %d entries", c.Len())
	}
	c.Put(StatKey{Path: "/x"}, digest.FromString("x"))
	if err := c.Save(); err != nil {
		t.Fatalf("saving over a corrupt file: %v", err)
	}
	if OpenFileStatCache(path, 10).Len() != 1 {
		t.Fatal("the rewritten file did not load")
	}
}

func TestFileStatCacheSavesOnlyWhenSomethingIsNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "statcache")
	k := StatKey{Path: "/a"}
	c := OpenFileStatCache(path, 10)
	c.Put(k, digest.FromString("a"))
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	c2 := OpenFileStatCache(path, 10)
	c2.Get(k)
	if err := c2.Save(); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Fatal("a cache with only hits was rewritten")
	}
}
