package fscopy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/internal/testutil"
)

func TestChecksum(t *testing.T) {
	base := []node{
		file("a.txt", 0o644, "hello"),
		file("b.txt", 0o644, "world"),
		file("other", 0o644, "not selected"),
		dir("d", 0o755),
		file("d/x", 0o644, "X"),
		link("d/l", "x"),
		dir("d/sub", 0o700),
		file("d/sub/y", 0o600, "Y"),
	}
	write := func(p, data string) func(t *testing.T, root string) {
		return func(t *testing.T, root string) {
			if err := os.WriteFile(filepath.Join(root, p), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name     string
		root     bool
		opt      ChecksumOptions
		mutate   func(t *testing.T, root string) // applied to the second tree only
		wantSame bool
	}{
		{name: "same content, other dir and mtimes", opt: ChecksumOptions{Src: []string{"a.txt", "d"}}, wantSame: true},
		{name: "one byte changed", opt: ChecksumOptions{Src: []string{"d"}}, mutate: write("d/sub/y", "Z")},
		{name: "file appended", opt: ChecksumOptions{Src: []string{"a.txt"}}, mutate: write("a.txt", "hello!")},
		{name: "mode changed", opt: ChecksumOptions{Src: []string{"d"}}, mutate: func(t *testing.T, root string) {
			if err := os.Chmod(filepath.Join(root, "d/x"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "dir mode changed", opt: ChecksumOptions{Src: []string{"d"}}, mutate: func(t *testing.T, root string) {
			if err := os.Chmod(filepath.Join(root, "d/sub"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "symlink target changed", opt: ChecksumOptions{Src: []string{"d"}}, mutate: func(t *testing.T, root string) {
			os.Remove(filepath.Join(root, "d/l"))
			if err := os.Symlink("sub/y", filepath.Join(root, "d/l")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "file renamed", opt: ChecksumOptions{Src: []string{"d"}}, mutate: func(t *testing.T, root string) {
			if err := os.Rename(filepath.Join(root, "d/x"), filepath.Join(root, "d/x2")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "file added", opt: ChecksumOptions{Src: []string{"d"}}, mutate: write("d/new", "")},
		{name: "unselected file changed", opt: ChecksumOptions{Src: []string{"a.txt", "d"}}, mutate: write("other", "changed"), wantSame: true},
		{name: "wildcard sees a new match", opt: ChecksumOptions{Src: []string{"*.txt"}, AllowWildcard: true}, mutate: write("c.txt", "c")},
		{name: "wildcard ignores non-matches", opt: ChecksumOptions{Src: []string{"*.txt"}, AllowWildcard: true}, mutate: write("c.md", "c"), wantSame: true},
		{name: "followed link target changed", opt: ChecksumOptions{Src: []string{"d/l"}, FollowSymlinks: true}, mutate: write("d/x", "X2")},
		{name: "unfollowed link ignores target", opt: ChecksumOptions{Src: []string{"d/l"}}, mutate: write("d/x", "X2"), wantSame: true},
		{name: "owner ignored for context", root: true, opt: ChecksumOptions{Src: []string{"d"}}, mutate: func(t *testing.T, root string) {
			if err := os.Lchown(filepath.Join(root, "d/x"), 1000, 1000); err != nil {
				t.Fatal(err)
			}
		}, wantSame: true},
		{name: "owner hashed with IncludeOwner", root: true, opt: ChecksumOptions{Src: []string{"d"}, IncludeOwner: true}, mutate: func(t *testing.T, root string) {
			if err := os.Lchown(filepath.Join(root, "d/x"), 1000, 1000); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "hardlink relation hashed", opt: ChecksumOptions{Src: []string{"d"}}, mutate: func(t *testing.T, root string) {
			if err := os.Link(filepath.Join(root, "d/x"), filepath.Join(root, "d/sub/x")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.root {
				testutil.RequiresRoot(t)
			}
			a, b := t.TempDir(), t.TempDir()
			build(t, a, base...)
			build(t, b, base...)
			if tc.mutate != nil {
				tc.mutate(t, b)
			}
			touchAll(t, b, time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC))
			var h Hasher
			da, err := h.Checksum(t.Context(), a, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			db, err := h.Checksum(t.Context(), b, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			if err := da.Validate(); err != nil {
				t.Errorf("checksum %q: %v", da, err)
			}
			if same := da == db; same != tc.wantSame {
				t.Errorf("checksums %s and %s: same = %v, want %v", da, db, same, tc.wantSame)
			}
		})
	}
}

// touchAll sets every mtime under root, so checksums are compared across different times.
func touchAll(t *testing.T, root string, tm time.Time) {
	t.Helper()
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		setMtime(t, p, tm)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestChecksumErrors(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	build(t, root, file("a.md", 0o644, "A"))
	for _, src := range []string{"missing", "*.txt"} {
		_, err := Checksum(t.Context(), root, []string{src}, true, false)
		var nf *NotFoundError
		if !errors.As(err, &nf) || nf.Path != src {
			t.Errorf("Checksum(%q) = %v, want a NotFoundError naming it", src, err)
		}
	}
}

// countingCache counts hits so the test can see the stat cache skip reads.
type countingCache struct {
	*MemStatCache
	hits atomic.Int64
}

func (c *countingCache) Get(k StatKey) (digest.Digest, bool) {
	d, ok := c.MemStatCache.Get(k)
	if ok {
		c.hits.Add(1)
	}
	return d, ok
}

func TestChecksumStatCache(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	build(t, root, file("f1", 0o644, "one"), file("f2", 0o644, "two"))
	cache := &countingCache{MemStatCache: NewMemStatCache()}
	h := Hasher{StatCache: cache}
	opt := ChecksumOptions{Src: []string{"."}}
	d1, err := h.Checksum(t.Context(), root, opt)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := h.Checksum(t.Context(), root, opt)
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 || cache.hits.Load() != 2 {
		t.Errorf("second run: %s vs %s with %d hits; want equal digests and 2 hits", d1, d2, cache.hits.Load())
	}
	// Same size and the old mtime: only ctime tells the content changed.
	p := filepath.Join(root, "f1")
	old := mtime(t, p)
	if err := os.WriteFile(p, []byte("uno"), 0o644); err != nil {
		t.Fatal(err)
	}
	setMtime(t, p, old)
	d3, err := h.Checksum(t.Context(), root, opt)
	if err != nil {
		t.Fatal(err)
	}
	if d3 == d1 {
		t.Errorf("checksum after rewriting f1 with the same size and mtime did not change")
	}
	var plain Hasher
	if want, err := plain.Checksum(t.Context(), root, opt); err != nil || want != d3 {
		t.Errorf("cached checksum %s, uncached %s (%v)", d3, want, err)
	}
}

// makeFiles writes n files of size bytes spread over directories of 100.
func makeFiles(b testing.TB, root string, n, size int) {
	buf := make([]byte, size)
	for i := range n {
		d := filepath.Join(root, fmt.Sprintf("d%03d", i/100))
		if i%100 == 0 {
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		for j := range buf {
			buf[j] = byte(i + j)
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d", i)), buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkChecksum5000(b *testing.B) {
	root := b.TempDir()
	makeFiles(b, root, 5000, 4096)
	opt := ChecksumOptions{Src: []string{"."}}
	b.Run("cold", func(b *testing.B) {
		var h Hasher
		for b.Loop() {
			if _, err := h.Checksum(b.Context(), root, opt); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("statcache", func(b *testing.B) {
		h := Hasher{StatCache: NewMemStatCache()}
		if _, err := h.Checksum(b.Context(), root, opt); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := h.Checksum(b.Context(), root, opt); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Logf("GOMAXPROCS=%d", runtime.GOMAXPROCS(0))
}

func BenchmarkCopy5000(b *testing.B) {
	src := b.TempDir()
	makeFiles(b, src, 5000, 4096)
	for b.Loop() {
		dst := b.TempDir()
		if err := Copy(b.Context(), src, dst, CopyOptions{Src: []string{"."}, Dest: "/app/"}); err != nil {
			b.Fatal(err)
		}
	}
}
