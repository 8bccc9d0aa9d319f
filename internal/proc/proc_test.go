package proc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

func TestStaleFindsOnlyDeadOwners(t *testing.T) {
	dir := t.TempDir()
	// A process that has exited and been reaped: its pid is free (or reused, which
	// only makes us keep a stale dir, never remove a live one).
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	live, err := TempDir(dir, "x")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{fmt.Sprintf("%d-old", dead), "no-pid", "12x-bad"} {
		if err := os.Mkdir(filepath.Join(dir, n), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Stale(dir)
	if err != nil {
		t.Fatal(err)
	}
	if Alive(dead) {
		t.Skipf("pid %d was reused; cannot tell", dead)
	}
	want := []string{filepath.Join(dir, fmt.Sprintf("%d-old", dead))}
	if !slices.Equal(got, want) {
		t.Fatalf("Stale = %v, want %v (live %s)", got, want, live)
	}
	if Owner(filepath.Base(live)) != os.Getpid() {
		t.Fatalf("TempDir %s does not carry our pid", live)
	}
}

func TestStaleOfMissingDir(t *testing.T) {
	got, err := Stale(filepath.Join(t.TempDir(), "missing"))
	if err != nil || got != nil {
		t.Fatalf("Stale(missing) = %v, %v", got, err)
	}
}
