package gc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// holdEnv makes the test binary a second process that takes a lock ("shared:ROOT" or
// "exclusive:ROOT"), says "held", and keeps it until its stdin closes: POSIX locks
// only conflict between processes.
const holdEnv = "GC_TEST_HOLD_LOCK"

func TestMain(m *testing.M) {
	if v := os.Getenv(holdEnv); v != "" {
		how, root, _ := strings.Cut(v, ":")
		var err error
		if how == "shared" {
			_, err = Shared(context.Background(), root)
		} else {
			_, err = Exclusive(context.Background(), root, true)
		}
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("held")
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// hold starts a process holding the lock; the returned func ends it.
func hold(t *testing.T, how, root string) func() {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+how+":"+root)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "held\n" {
		t.Fatalf("lock holder: %q", line)
	}
	done := false
	stop := func() {
		if !done {
			done = true
			in.Close()
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestLockBuildsShareAndPruneExcludes(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	// This process's lease, as openStore takes it.
	own, err := Shared(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Release()
	stopBuild := hold(t, "shared", root) // another build runs
	if _, err := Exclusive(ctx, root, false); !errors.Is(err, ErrBusy) {
		t.Fatalf("prune while a build runs: %v, want ErrBusy", err)
	}
	got := make(chan error, 1)
	go func() {
		l, err := Exclusive(ctx, root, true)
		if err == nil {
			l.Release()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("prune did not wait for the running build: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	stopBuild()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("prune still waiting after the build ended")
	}
}

func TestSharedWaitsForPrune(t *testing.T) {
	root := t.TempDir()
	stop := hold(t, "exclusive", root)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Shared(ctx, root); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("build start during prune: %v, want to wait until the deadline", err)
	}
	stop()
	l, err := Shared(context.Background(), root)
	if err != nil {
		t.Fatalf("build start after prune: %v", err)
	}
	l.Release()
}

// A process's own lease never blocks it: prune converts it in place.
func TestExclusiveConvertsOwnLease(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	for range 2 { // two stores opened by one process
		if _, err := Shared(ctx, root); err != nil {
			t.Fatal(err)
		}
	}
	l, err := Exclusive(ctx, root, false)
	if err != nil {
		t.Fatalf("Exclusive over our own leases: %v", err)
	}
	if err := l.Release(); err != nil || l.Release() != nil {
		t.Fatalf("Release: %v", err)
	}
}

func TestExclusiveWaitEndsWithContext(t *testing.T) {
	root := t.TempDir()
	hold(t, "shared", root)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := Exclusive(ctx, root, true); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Exclusive = %v, want the context's deadline", err)
	}
}
