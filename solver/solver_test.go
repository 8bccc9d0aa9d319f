package solver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/llb"
)

// memIndex is an in-memory Index.
type memIndex struct {
	mu sync.Mutex
	m  map[digest.Digest]cache.Record
}

func newMemIndex() *memIndex { return &memIndex{m: map[digest.Digest]cache.Record{}} }

func (x *memIndex) Get(_ context.Context, k digest.Digest) (cache.Record, bool, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	r, ok := x.m[k]
	return r, ok, nil
}

func (x *memIndex) Put(_ context.Context, k digest.Digest, r cache.Record) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.m[k] = r
	return nil
}

// fakeOps runs every exec vertex as "append a layer named by its digest", counting runs
// and the peak number of ops running at once.
type fakeOps struct {
	runs     sync.Map // digest → *int64
	inFlight atomic.Int64
	peak     atomic.Int64
	hold     time.Duration
	fail     string // exec args[0] that fails
	extra    map[string]digest.Digest
}

type fakeOp struct {
	f *fakeOps
	v *llb.Vertex
}

func (f *fakeOps) resolve(v *llb.Vertex) (Op, error) { return fakeOp{f, v}, nil }

func (f *fakeOps) count(v *llb.Vertex) int64 {
	n, ok := f.runs.Load(v.Digest())
	if !ok {
		return 0
	}
	return atomic.LoadInt64(n.(*int64))
}

func (o fakeOp) CacheKey(context.Context, []Result) (digest.Digest, error) {
	if e, ok := o.v.Op().(*llb.ExecOp); ok {
		return o.f.extra[e.Args[0]], nil
	}
	return "", nil
}

func (o fakeOp) Exec(ctx context.Context, inputs []Result, logs io.Writer) (cache.Ref, error) {
	n, _ := o.f.runs.LoadOrStore(o.v.Digest(), new(int64))
	atomic.AddInt64(n.(*int64), 1)
	cur := o.f.inFlight.Add(1)
	defer o.f.inFlight.Add(-1)
	for {
		p := o.f.peak.Load()
		if cur <= p || o.f.peak.CompareAndSwap(p, cur) {
			break
		}
	}
	select {
	case <-time.After(o.f.hold):
	case <-ctx.Done():
		return cache.Ref{}, ctx.Err()
	}
	var ref cache.Ref
	if len(inputs) > 0 {
		ref = inputs[0].Ref
	}
	if e, ok := o.v.Op().(*llb.ExecOp); ok {
		fmt.Fprintf(logs, "running %s\n", e.Args[0])
		if e.Args[0] == o.f.fail {
			return cache.Ref{}, errors.New("exit 1")
		}
	}
	return ref.WithLayer(cache.Layer{DiffID: o.v.Digest()}), nil
}

func mustRun(t testing.TB, s llb.State, arg string) llb.State {
	t.Helper()
	out, err := s.Run(llb.ExecOp{Args: []string{arg}, Cwd: "/", Network: llb.NetworkHost}, llb.Meta{Description: "RUN " + arg})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustImage(t testing.TB) llb.State {
	t.Helper()
	s, err := llb.Image("example.com/base:1@sha256:"+strings.Repeat("a", 64), llb.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fourStages builds 4 independent chains off one base, joined by copies.
func fourStages(t testing.TB) (out *llb.Vertex, leaves []llb.State) {
	base := mustImage(t)
	final := mustRun(t, base, "final")
	for i := range 4 {
		leaf := mustRun(t, base, fmt.Sprintf("stage%d", i))
		leaves = append(leaves, leaf)
		var err error
		final, err = final.Copy(leaf, llb.CopyAction{Src: []string{"/out"}, Dest: "/"}, llb.Meta{})
		if err != nil {
			t.Fatal(err)
		}
	}
	return final.Vertex(), leaves
}

func TestSolveRunsEachVertexOnceAndConcurrently(t *testing.T) {
	t.Parallel()
	f := &fakeOps{hold: 50 * time.Millisecond}
	s, err := New(f.resolve, newMemIndex(), WithParallelism(4))
	if err != nil {
		t.Fatal(err)
	}
	out, leaves := fourStages(t)
	res, err := s.Solve(t.Context(), out)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.count(leaves[0].Vertex()); got != 1 {
		t.Errorf("stage0 ran %d times, want 1", got)
	}
	if got := f.count(leaves[0].Vertex().Inputs()[0]); got != 1 {
		t.Errorf("shared base ran %d times, want 1", got)
	}
	if got := f.peak.Load(); got < 2 {
		t.Errorf("peak concurrency %d: independent stages did not run at the same time", got)
	}
	if got := f.peak.Load(); got > 4 {
		t.Errorf("peak concurrency %d exceeds the limit 4", got)
	}
	if r := res[out.Digest()]; len(r.Ref.Layers) != 6 {
		t.Errorf("output has %d layers, want 6 (base, final, 4 copies)", len(r.Ref.Layers))
	}
}

func TestSolveParallelismLimit(t *testing.T) {
	t.Parallel()
	f := &fakeOps{hold: 20 * time.Millisecond}
	s, _ := New(f.resolve, newMemIndex(), WithParallelism(1))
	out, _ := fourStages(t)
	if _, err := s.Solve(t.Context(), out); err != nil {
		t.Fatal(err)
	}
	if got := f.peak.Load(); got != 1 {
		t.Errorf("peak concurrency %d with parallelism 1", got)
	}
}

func TestDefaultParallelismRunsFourStagesTogether(t *testing.T) {
	t.Parallel()
	// The shared corpus's "parallel" case: four stages that mostly wait. With the
	// default limit they must all be running at once, whatever the CPU count.
	f := &fakeOps{hold: 300 * time.Millisecond}
	s, err := New(f.resolve, newMemIndex())
	if err != nil {
		t.Fatal(err)
	}
	out, _ := fourStages(t)
	if _, err := s.Solve(t.Context(), out); err != nil {
		t.Fatal(err)
	}
	if got := f.peak.Load(); got < 4 {
		t.Errorf("peak concurrency %d with the default limit %d: independent stages queued", got, DefaultParallelism())
	}
}

func TestSolveSharesVerticesAcrossOutputs(t *testing.T) {
	t.Parallel()
	// Two platforms' graphs that share a builder stage: solved together, each shared
	// vertex runs once however many outputs reach it, with --no-cache too.
	f := &fakeOps{hold: 20 * time.Millisecond}
	s, err := New(f.resolve, newMemIndex())
	if err != nil {
		t.Fatal(err)
	}
	shared := mustRun(t, mustImage(t), "build tool")
	var outs []*llb.Vertex
	for _, p := range []string{"amd64", "arm64"} {
		out := mustRun(t, shared, "use tool for "+p)
		outs = append(outs, out.Vertex())
	}
	res, err := s.Solve(t.Context(), outs...)
	if err != nil {
		t.Fatal(err)
	}
	if n := f.count(shared.Vertex()); n != 1 {
		t.Errorf("the shared step ran %d times, want 1", n)
	}
	if n := f.count(shared.Vertex().Inputs()[0]); n != 1 {
		t.Errorf("the shared base ran %d times, want 1", n)
	}
	for _, out := range outs {
		if f.count(out) != 1 || len(res[out.Digest()].Ref.Layers) == 0 {
			t.Errorf("output %s: ran %d times, result %+v", out.Digest(), f.count(out), res[out.Digest()])
		}
	}
}

func TestSecondSolveHitsCache(t *testing.T) {
	t.Parallel()
	idx := newMemIndex()
	f := &fakeOps{}
	s, _ := New(f.resolve, idx)
	out, _ := fourStages(t)
	first, err := s.Solve(t.Context(), out)
	if err != nil {
		t.Fatal(err)
	}
	f2 := &fakeOps{}
	s2, _ := New(f2.resolve, idx)
	second, err := s2.Solve(t.Context(), out)
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	f2.runs.Range(func(any, any) bool { ran++; return true })
	if ran != 0 {
		t.Errorf("%d vertices ran again on an identical solve, want 0", ran)
	}
	if len(second) != len(first) {
		t.Errorf("second solve reached %d vertices, first %d", len(second), len(first))
	}
	for d, r := range second {
		if !r.Cached {
			t.Errorf("vertex %s not marked cached", d)
		}
		if r.Key != first[d].Key {
			t.Errorf("vertex %s key changed between solves", d)
		}
		if !r.Created.Equal(first[d].Created) || r.Created.IsZero() {
			t.Errorf("vertex %s created %v on the cached solve, %v when it ran", d, r.Created, first[d].Created)
		}
	}
}

func TestContentChecksumChangesOnlyDependentKeys(t *testing.T) {
	t.Parallel()
	idx := newMemIndex()
	base := mustImage(t)
	a := mustRun(t, base, "a")
	b := mustRun(t, a, "b")
	c := mustRun(t, b, "c")
	f := &fakeOps{extra: map[string]digest.Digest{"b": digest.FromString("v1")}}
	s, _ := New(f.resolve, idx)
	if _, err := s.Solve(t.Context(), c.Vertex()); err != nil {
		t.Fatal(err)
	}
	f2 := &fakeOps{extra: map[string]digest.Digest{"b": digest.FromString("v2")}}
	s2, _ := New(f2.resolve, idx)
	res, err := s2.Solve(t.Context(), c.Vertex())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		v    llb.State
		runs int64
	}{{a, 0}, {b, 1}, {c, 1}} {
		if got := f2.count(tc.v.Vertex()); got != tc.runs {
			t.Errorf("%s ran %d times, want %d", tc.v.Vertex().Meta().Description, got, tc.runs)
		}
	}
	if !res[a.Vertex().Digest()].Cached || res[c.Vertex().Digest()].Cached {
		t.Errorf("cached flags wrong: a=%v c=%v", res[a.Vertex().Digest()].Cached, res[c.Vertex().Digest()].Cached)
	}
}

func TestIgnoreCacheReruns(t *testing.T) {
	t.Parallel()
	idx := newMemIndex()
	base := mustImage(t)
	a := mustRun(t, base, "a")
	s, _ := New((&fakeOps{}).resolve, idx)
	if _, err := s.Solve(t.Context(), a.Vertex()); err != nil {
		t.Fatal(err)
	}
	noCache := a.Vertex().WithMeta(llb.Meta{IgnoreCache: true})
	f := &fakeOps{}
	s2, _ := New(f.resolve, idx)
	if _, err := s2.Solve(t.Context(), noCache); err != nil {
		t.Fatal(err)
	}
	if f.count(noCache) != 1 {
		t.Errorf("IgnoreCache vertex ran %d times, want 1", f.count(noCache))
	}
}

func TestErrorNamesVertexAndKeepsLogs(t *testing.T) {
	t.Parallel()
	base := mustImage(t)
	v, err := base.Run(llb.ExecOp{Args: []string{"boom"}, Cwd: "/"}, llb.Meta{
		Description: "[2/3] RUN boom",
		Location:    &llb.SourceLocation{File: "Dockerfile", StartLine: 7, EndLine: 7},
	})
	if err != nil {
		t.Fatal(err)
	}
	// A sibling that would run long must be cancelled by the failure.
	slow := mustRun(t, base, "slow")
	join, _ := v.Copy(slow, llb.CopyAction{Src: []string{"/"}, Dest: "/"}, llb.Meta{})
	f := &fakeOps{fail: "boom"}
	s, _ := New(f.resolve, newMemIndex())
	_, err = s.Solve(t.Context(), join.Vertex())
	var ve *VertexError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v is not a VertexError", err)
	}
	if !strings.Contains(err.Error(), "Dockerfile:7: [2/3] RUN boom") {
		t.Errorf("error %q does not name the Dockerfile line", err)
	}
	if !strings.Contains(string(ve.Logs), "running boom") {
		t.Errorf("error logs %q lack the op output", ve.Logs)
	}
}

func TestCancelStopsSolve(t *testing.T) {
	t.Parallel()
	f := &fakeOps{hold: time.Hour}
	s, _ := New(f.resolve, newMemIndex())
	ctx, cancel := context.WithCancel(t.Context())
	out, _ := fourStages(t)
	done := make(chan error, 1)
	go func() { _, err := s.Solve(ctx, out); done <- err }()
	for f.inFlight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Solve after cancel = %v, want context.Canceled", err)
	}
}
