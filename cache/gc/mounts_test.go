package gc

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestPruneCacheMounts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	old := time.Now().Add(-48 * time.Hour)
	// mk makes instance n of cache key with one file last written at mtime.
	mk := func(key, n string, mtime time.Time) string {
		inst := filepath.Join(dir, key, n)
		if err := os.MkdirAll(inst, 0o755); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(inst, "data")
		if err := os.WriteFile(f, make([]byte, 8192), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{f, inst} {
			if err := os.Chtimes(p, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
		return inst
	}
	lock := func(inst string, how int) func() {
		f, err := os.OpenFile(inst+".lock", os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Flock(int(f.Fd()), how); err != nil {
			t.Fatal(err)
		}
		return func() { f.Close() }
	}
	oldFree := mk("k1", "0", old)
	inUseShared := mk("k2", "0", old)
	defer lock(inUseShared, unix.LOCK_SH)()
	privFree := mk("k3", "0", old)
	inUsePriv := mk("k3", "1", old)
	defer lock(inUsePriv, unix.LOCK_EX)()
	recent := mk("k4", "0", time.Now())

	got, err := PruneCacheMounts(ctx, dir, time.Now().Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	exists := func(p string) bool { _, err := os.Lstat(p); return err == nil }
	for p, want := range map[string]bool{
		filepath.Dir(oldFree): false, inUseShared: true, privFree: false, inUsePriv: true, recent: true,
	} {
		if exists(p) != want {
			t.Errorf("%s exists = %v, want %v", p, !want, want)
		}
	}
	if got.Instances != 2 || got.Freed < 2*8192 {
		t.Errorf("pruned %+v, want 2 instances and at least 16 KiB", got)
	}

	// Without a cutoff, unused recent instances go too; used ones never.
	if _, err := PruneCacheMounts(ctx, dir, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Dir(recent)) || !exists(inUseShared) || !exists(inUsePriv) {
		t.Errorf("after pruning all: recent %v, in use %v %v", exists(recent), exists(inUseShared), exists(inUsePriv))
	}
}
