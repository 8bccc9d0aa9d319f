package solver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/llb"
)

// Result is a solved vertex: its cache key and the filesystem it produced.
type Result struct {
	Key digest.Digest
	Ref cache.Ref
	// Cached is true when the result came from the index without running the op.
	Cached bool
	// Created is when the result was first made (on a cache hit, by the earlier build);
	// zero for local sources.
	Created time.Time
}

// Op is the implementation of one vertex.
type Op interface {
	// CacheKey returns what the op's key depends on beyond its definition and its inputs'
	// keys, such as a checksum of the files it reads from a local source; "" for nothing.
	CacheKey(ctx context.Context, inputs []Result) (digest.Digest, error)
	// Exec runs the op on its inputs' results. Output of processes goes to logs.
	Exec(ctx context.Context, inputs []Result, logs io.Writer) (cache.Ref, error)
}

// ResolveFunc binds a vertex to its implementation.
type ResolveFunc func(v *llb.Vertex) (Op, error)

// Index is the persistent map from cache key to result.
type Index interface {
	Get(ctx context.Context, key digest.Digest) (cache.Record, bool, error)
	Put(ctx context.Context, key digest.Digest, rec cache.Record) error
}

// Progress receives the life of each vertex. Implementations must be safe for concurrent use.
type Progress interface {
	// Started is called when a vertex's inputs are ready and it begins (lookup or run).
	Started(v *llb.Vertex)
	// Log receives output of a running vertex.
	Log(v *llb.Vertex, p []byte)
	// Finished is called once per started vertex.
	Finished(v *llb.Vertex, cached bool, err error)
}

// Solver runs graphs. Create it with New.
type Solver struct {
	resolve  ResolveFunc
	index    Index
	limit    int64
	progress Progress
}

// Option configures a Solver.
type Option func(*Solver) error

// WithParallelism bounds how many ops execute at once (default: DefaultParallelism).
func WithParallelism(n int) Option {
	return func(s *Solver) error {
		if n <= 0 {
			return errors.New("parallelism must be greater than zero")
		}
		s.limit = int64(n)
		return nil
	}
}

// WithProgress sets the receiver of vertex events.
func WithProgress(p Progress) Option {
	return func(s *Solver) error { s.progress = p; return nil }
}

// DefaultParallelism is how many ops run at once unless WithParallelism says otherwise:
// twice the CPUs, at least 4. RUN steps often wait (on the network, on sleep, on a
// disk) rather than compute, so one per CPU would leave independent stages queued
// behind idle ones; the kernel shares the CPUs among those that do compute.
func DefaultParallelism() int { return max(2*runtime.GOMAXPROCS(0), 4) }

// New returns a solver that binds ops with resolve and caches results in index.
func New(resolve ResolveFunc, index Index, opts ...Option) (*Solver, error) {
	s := &Solver{resolve: resolve, index: index, limit: int64(DefaultParallelism()), progress: nopProgress{}}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Solve runs the graphs below outs together and returns the result of every vertex it
// reached, by digest (the caller needs inner results, e.g. to tell which steps added a
// layer). A vertex several outputs share (one platform's builder stage used by every
// target platform) runs once, and the parallelism limit covers them all.
func (s *Solver) Solve(ctx context.Context, outs ...*llb.Vertex) (map[digest.Digest]Result, error) {
	j := &job{s: s, sem: semaphore.NewWeighted(s.limit), states: map[digest.Digest]*state{}}
	g, gctx := errgroup.WithContext(ctx)
	for _, out := range outs {
		g.Go(func() error {
			_, err := j.get(gctx, out)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	res := make(map[digest.Digest]Result, len(j.states))
	for d, st := range j.states {
		res[d] = st.res
	}
	return res, nil
}

type job struct {
	s      *Solver
	sem    *semaphore.Weighted
	mu     sync.Mutex
	states map[digest.Digest]*state
}

type state struct {
	done chan struct{}
	res  Result
	err  error
}

// get returns the result of v, running it if no other goroutine of this solve is.
func (j *job) get(ctx context.Context, v *llb.Vertex) (Result, error) {
	j.mu.Lock()
	st, running := j.states[v.Digest()]
	if !running {
		st = &state{done: make(chan struct{})}
		j.states[v.Digest()] = st
	}
	j.mu.Unlock()
	if running {
		select {
		case <-st.done:
			return st.res, st.err
		case <-ctx.Done():
			return Result{}, context.Cause(ctx)
		}
	}
	st.res, st.err = j.build(ctx, v)
	close(st.done)
	return st.res, st.err
}

func (j *job) build(ctx context.Context, v *llb.Vertex) (Result, error) {
	inputs := make([]Result, len(v.Inputs()))
	g, gctx := errgroup.WithContext(ctx)
	for i, in := range v.Inputs() {
		g.Go(func() error {
			r, err := j.get(gctx, in)
			inputs[i] = r
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return Result{}, err
	}
	op, err := j.s.resolve(v)
	if err != nil {
		return Result{}, &VertexError{Vertex: v, Err: err}
	}
	j.s.progress.Started(v)
	res, err := j.run(ctx, v, op, inputs)
	j.s.progress.Finished(v, res.Cached, err)
	return res, err
}

func (j *job) run(ctx context.Context, v *llb.Vertex, op Op, inputs []Result) (Result, error) {
	extra, err := op.CacheKey(ctx, inputs)
	if err != nil {
		return Result{}, &VertexError{Vertex: v, Err: err}
	}
	key := cacheKey(v, inputs, extra)
	if !v.Meta().IgnoreCache {
		rec, ok, err := j.s.index.Get(ctx, key)
		if err != nil {
			return Result{}, &VertexError{Vertex: v, Err: err}
		}
		if ok {
			return Result{Key: key, Ref: rec.Ref, Cached: true, Created: rec.Created}, nil
		}
	}
	if err := j.sem.Acquire(ctx, 1); err != nil {
		return Result{}, context.Cause(ctx)
	}
	defer j.sem.Release(1)
	logs := &tailWriter{v: v, p: j.s.progress, max: 4096}
	start := time.Now()
	ref, err := op.Exec(ctx, inputs, logs)
	if err != nil {
		return Result{}, &VertexError{Vertex: v, Err: err, Logs: logs.tail(), Duration: time.Since(start)}
	}
	if ref.LocalDir != "" {
		return Result{Key: key, Ref: ref}, nil
	}
	rec := cache.Record{Ref: ref, Created: time.Now().UTC()}
	if err := j.s.index.Put(ctx, key, rec); err != nil {
		return Result{}, &VertexError{Vertex: v, Err: err}
	}
	return Result{Key: key, Ref: ref, Created: rec.Created}, nil
}

// cacheKeyVersion versions the key derivation itself.
const cacheKeyVersion = 1

func cacheKey(v *llb.Vertex, inputs []Result, extra digest.Digest) digest.Digest {
	ins := make([]digest.Digest, len(inputs))
	for i, in := range inputs {
		ins[i] = in.Key
	}
	dt, _ := json.Marshal(struct {
		V      int             `json:"v"`
		Op     digest.Digest   `json:"op"`
		Inputs []digest.Digest `json:"inputs"`
		Extra  digest.Digest   `json:"extra,omitempty"`
	}{cacheKeyVersion, v.Digest(), ins, extra})
	return digest.FromBytes(dt)
}

// VertexError is an error of one vertex, with the last output it printed.
type VertexError struct {
	Vertex   *llb.Vertex
	Err      error
	Logs     []byte
	Duration time.Duration
}

func (e *VertexError) Error() string { return fmt.Sprintf("%s: %v", e.Where(), e.Err) }

// Where names the vertex: "Dockerfile:7: [2/3] RUN make", or its op kind and digest.
func (e *VertexError) Where() string {
	m := e.Vertex.Meta()
	where := m.Description
	if where == "" {
		where = e.Vertex.Op().Kind() + " " + e.Vertex.Digest().String()
	}
	if m.Location != nil {
		where = fmt.Sprintf("%s:%d: %s", m.Location.File, m.Location.StartLine, where)
	}
	return where
}

func (e *VertexError) Unwrap() error { return e.Err }

// tailWriter forwards output to progress and keeps the last max bytes for errors.
type tailWriter struct {
	v   *llb.Vertex
	p   Progress
	max int
	mu  sync.Mutex
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.p.Log(t.v, p)
	t.mu.Lock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	t.mu.Unlock()
	return len(p), nil
}

func (t *tailWriter) tail() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.buf) > t.max {
		return append([]byte(nil), t.buf[len(t.buf)-t.max:]...)
	}
	return append([]byte(nil), t.buf...)
}

type nopProgress struct{}

func (nopProgress) Started(*llb.Vertex)               {}
func (nopProgress) Log(*llb.Vertex, []byte)           {}
func (nopProgress) Finished(*llb.Vertex, bool, error) {}
