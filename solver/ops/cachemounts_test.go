package ops

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/builderdev/builder/llb"
)

// holdLock makes another process hold a flock on path (-s shared, -x exclusive) until
// the test ends: the cross-process case of two builders on one root.
func holdLock(t *testing.T, path, mode string) {
	t.Helper()
	flock, err := exec.LookPath("flock")
	if err != nil {
		t.Skipf("needs util-linux flock: %v", err)
	}
	cmd := exec.Command(flock, mode, path, "-c", "echo locked; exec sleep 60")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("flock: %q, %v", line, err)
	}
}

func TestAcquireCacheDirAcrossProcesses(t *testing.T) {
	create := func(string) error { return nil }
	tests := []struct {
		name     string
		held     string // flock mode another process holds on instance 0
		sharing  string
		wantDir  string // "" means: must wait (and give up when ctx ends)
		wantWait bool
	}{
		{name: "shared with shared", held: "-s", sharing: llb.SharingShared, wantDir: "0"},
		{name: "locked waits for shared", held: "-s", sharing: llb.SharingLocked, wantWait: true},
		{name: "shared waits for locked", held: "-x", sharing: llb.SharingShared, wantWait: true},
		{name: "private takes another instance", held: "-s", sharing: llb.SharingPrivate, wantDir: "1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			key := cacheKey("id", "")
			if err := os.MkdirAll(filepath.Join(root, key), 0o700); err != nil {
				t.Fatal(err)
			}
			holdLock(t, filepath.Join(root, key, "0.lock"), tc.held)
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			cd, err := acquireCacheDir(ctx, root, key, tc.sharing, create)
			if tc.wantWait {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("acquire = %v, want it to wait until ctx ends", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer cd.release()
			if got := filepath.Base(cd.path); got != tc.wantDir {
				t.Errorf("instance %s, want %s", got, tc.wantDir)
			}
			if fi, err := os.Stat(cd.path); err != nil || !fi.IsDir() {
				t.Errorf("instance dir: %v", err)
			}
		})
	}
}

func TestAcquireCacheDirCreatesOnce(t *testing.T) {
	root := t.TempDir()
	key := cacheKey("id", "")
	// A creator that died mid-way left a partial dir behind.
	if err := os.MkdirAll(filepath.Join(root, key, ".new-stale"), 0o700); err != nil {
		t.Fatal(err)
	}
	calls := 0
	create := func(dir string) error {
		calls++
		return os.WriteFile(filepath.Join(dir, "seed"), []byte("x"), 0o644)
	}
	for range 2 {
		cd, err := acquireCacheDir(t.Context(), root, key, llb.SharingLocked, create)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(cd.path, "seed")); err != nil {
			t.Error(err)
		}
		cd.release()
	}
	if calls != 1 {
		t.Errorf("create called %d times, want 1", calls)
	}
	if _, err := os.Stat(filepath.Join(root, key, ".new-stale")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale partial instance left: %v", err)
	}

	failing := func(string) error { return errors.New("seed broke") }
	if _, err := acquireCacheDir(t.Context(), root, cacheKey("other", ""), llb.SharingShared, failing); err == nil {
		t.Fatal("a failed create gave a cache dir")
	}
	if _, err := os.Stat(filepath.Join(root, cacheKey("other", ""), "0")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed create left instance 0: %v", err)
	}
}

func TestCacheKeySeed(t *testing.T) {
	if cacheKey("id", "") == cacheKey("id", "sha256:aa") || cacheKey("id", "sha256:aa") == cacheKey("id", "sha256:bb") {
		t.Error("a cache seeded from another result shares its directory")
	}
	if cacheKey("a", "") == cacheKey("b", "") {
		t.Error("two ids share a directory")
	}
}

func TestCacheMountReadAndRestore(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	key := CacheMountKey("/cache", "")

	// A missing cache is not read; restoring creates it once, and never again.
	if ok, err := ReadCacheMount(ctx, root, key, func(string) error { return errors.New("called") }); ok || err != nil {
		t.Fatalf("ReadCacheMount(missing) = %v, %v; want false, nil", ok, err)
	}
	created, err := RestoreCacheMount(ctx, root, key, func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "log"), []byte("A\n"), 0o644)
	})
	if err != nil || !created {
		t.Fatalf("RestoreCacheMount(missing) = %v, %v; want true, nil", created, err)
	}
	created, err = RestoreCacheMount(ctx, root, key, func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "log"), []byte("B\n"), 0o644)
	})
	if err != nil || created {
		t.Fatalf("RestoreCacheMount(existing) = %v, %v; want false, nil", created, err)
	}
	// The restored dir is what a RUN step's cache mount uses.
	cd, err := acquireCacheDir(ctx, root, key, llb.SharingShared, func(string) error { return errors.New("created again") })
	if err != nil {
		t.Fatal(err)
	}
	if dt, _ := os.ReadFile(filepath.Join(cd.path, "log")); string(dt) != "A\n" {
		t.Errorf("cache mount holds %q, want the restored A", dt)
	}
	// A shared user does not block reading.
	var got string
	ok, err := ReadCacheMount(ctx, root, key, func(dir string) error {
		dt, err := os.ReadFile(filepath.Join(dir, "log"))
		got = string(dt)
		return err
	})
	if !ok || err != nil || got != "A\n" {
		t.Errorf("ReadCacheMount = %v, %v, %q; want true, nil, A", ok, err, got)
	}
	cd.release()

	// An exclusive user makes it busy, without waiting.
	cd, err = acquireCacheDir(ctx, root, key, llb.SharingLocked, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCacheMount(ctx, root, key, func(string) error { return nil }); !errors.Is(err, ErrCacheMountBusy) {
		t.Errorf("ReadCacheMount of a locked cache: %v, want ErrCacheMountBusy", err)
	}
	cd.release()

	for _, bad := range []string{"../x", "", "0123"} {
		if _, err := RestoreCacheMount(ctx, root, bad, func(string) error { return nil }); err == nil {
			t.Errorf("RestoreCacheMount(%q) accepted an invalid key", bad)
		}
	}
}
