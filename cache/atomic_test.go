package cache

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteAtomicKeepsOldContentOnFailure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	name := filepath.Join(dir, "record")
	if err := WriteFileAtomic(name, []byte("old")); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := WriteAtomic(name, func(f *os.File) error {
		f.Write([]byte("half-written"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WriteAtomic = %v, want the write's error", err)
	}
	if dt, _ := os.ReadFile(name); string(dt) != "old" {
		t.Errorf("after a failed write the file holds %q, want the old content", dt)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d entries in the directory, want only the record (no temp file)", len(ents))
	}
	if err := WriteFileAtomic(name, []byte("new")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(name)
	if dt, _ := os.ReadFile(name); err != nil || string(dt) != "new" || fi.Mode().Perm() != 0o644 {
		t.Errorf("after a good write: %q, mode %v, %v", dt, fi.Mode().Perm(), err)
	}
}
