//go:build linux

package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestIndependentStagesOverlap checks that two stages with no dependency between them
// run at the same time: each records, from inside its sandbox, when it started and
// ended, and the two intervals must overlap. (No wall-clock threshold: the order of
// events is the assertion.)
func TestIndependentStagesOverlap(t *testing.T) {
	root := newRoot(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": `FROM {{BASE}} AS a
RUN cut -d" " -f1 /proc/uptime > /start && sleep 1 && cut -d" " -f1 /proc/uptime > /end

FROM {{BASE}} AS b
RUN cut -d" " -f1 /proc/uptime > /start && sleep 1 && cut -d" " -f1 /proc/uptime > /end

FROM {{BASE}}
COPY --from=a /start /a.start
COPY --from=a /end /a.end
COPY --from=b /start /b.start
COPY --from=b /end /b.end
`})
	out := t.TempDir()
	mustBuilder(t, root, "build", "--progress=plain", "--output", "type=oci,tar=false,name=overlap,dest="+filepath.Join(out, "layout"), ctxDir)
	bundle := filepath.Join(t.TempDir(), "bundle")
	if dt, err := exec.Command("umoci", "unpack", "--image", filepath.Join(out, "layout")+":latest", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, dt)
	}
	read := func(n string) int64 {
		dt, err := os.ReadFile(filepath.Join(bundle, "rootfs", n))
		if err != nil {
			t.Fatal(err)
		}
		// /proc/uptime: seconds with two decimals, one clock for every sandbox.
		v, err := strconv.ParseInt(strings.ReplaceAll(strings.TrimSpace(string(dt)), ".", ""), 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		return v
	}
	aStart, aEnd, bStart, bEnd := read("a.start"), read("a.end"), read("b.start"), read("b.end")
	if !(aStart < bEnd && bStart < aEnd) {
		t.Errorf("stages ran one after the other: a [%d, %d], b [%d, %d]", aStart, aEnd, bStart, bEnd)
	}
}

// TestKilledBuildLeavesAUsableStore kills a build with SIGKILL while a RUN step runs,
// then builds again on the same root: the build must succeed, run the step (nothing of
// the killed run may be taken as a result), and leave no mounts behind.
func TestKilledBuildLeavesAUsableStore(t *testing.T) {
	root := newRoot(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": `FROM {{BASE}}
RUN echo started && touch /partial && sleep 3 && echo finished > /done
`})
	cmd := exec.Command(builderBin, "--root", root, "build", "--progress=plain", "-t", "killed", ctxDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "started") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the RUN step never started:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	r := mustBuilder(t, root, "build", "--progress=plain", "-t", "killed", ctxDir)
	st := stepStatus(t, r.stderr)
	if got := st["RUN echo started && touch /partial && sleep 3 && echo finished > /done"]; got != "DONE" {
		t.Errorf("after the kill the RUN step ended %q, want DONE (run again):\n%s", got, r.stderr)
	}
	// Nothing of the killed build may stay under the store: no active snapshot dirs once
	// a later builder process cleaned up.
	active, _ := filepath.Glob(filepath.Join(root, "snapshots", "active", "*"))
	if len(active) != 0 {
		t.Errorf("active snapshot dirs left after the next build: %v", active)
	}
}

// TestRepeatedLayer builds a chain in which one layer occurs twice (the same COPY
// twice gives identical diffs); overlayfs would refuse that lower dir twice.
func TestRepeatedLayer(t *testing.T) {
	root := newRoot(t)
	ctxDir := writeContext(t, map[string]string{"a": "same\n", "Dockerfile": `FROM {{BASE}}
COPY a /x
RUN echo changed > /x
COPY a /x
RUN test "$(cat /x)" = same
`})
	mustBuilder(t, root, "build", "--progress=plain", ctxDir)
}
