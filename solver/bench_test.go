package solver

import (
	"fmt"
	"testing"

	"github.com/builderdev/builder/llb"
)

// benchVertices is the size of the benchmark graphs.
const benchVertices = 1000

// stagesGraph is the shape of a large multi-stage Dockerfile: one base image, 10 chains
// of 99 RUN steps on it, the chains' results copied into the first one (1 + 990 + 9).
func stagesGraph(b *testing.B) *llb.Vertex {
	b.Helper()
	base := mustImage(b)
	var leaves []llb.State
	for c := range 10 {
		s := base
		for i := range 99 {
			s = mustRun(b, s, fmt.Sprintf("stage%d-step%d", c, i))
		}
		leaves = append(leaves, s)
	}
	final := leaves[0]
	for _, l := range leaves[1:] {
		var err error
		final, err = final.Copy(l, llb.CopyAction{Src: []string{"/out"}, Dest: "/"}, llb.Meta{})
		if err != nil {
			b.Fatal(err)
		}
	}
	return final.Vertex()
}

// chainGraph is the worst case for depth: 999 RUN steps, each on the one before.
func chainGraph(b *testing.B) *llb.Vertex {
	b.Helper()
	s := mustImage(b)
	for i := range benchVertices - 1 {
		s = mustRun(b, s, fmt.Sprintf("step%d", i))
	}
	return s.Vertex()
}

func countVertices(b *testing.B, out *llb.Vertex) int {
	b.Helper()
	n := 0
	if err := llb.Walk(out, func(*llb.Vertex) error { n++; return nil }); err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkSolve measures the solver's own cost per vertex on 1,000-vertex graphs of
// fake ops that do nothing: "uncached" runs every op into an empty index, "cached" finds
// every key in the index (a no-op rebuild).
func BenchmarkSolve(b *testing.B) {
	for _, g := range []struct {
		name  string
		graph func(*testing.B) *llb.Vertex
	}{{"stages", stagesGraph}, {"chain", chainGraph}} {
		out := g.graph(b)
		if n := countVertices(b, out); n != benchVertices {
			b.Fatalf("%s graph has %d vertices, want %d", g.name, n, benchVertices)
		}
		b.Run(g.name+"/uncached", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s, err := New((&fakeOps{}).resolve, newMemIndex())
				if err != nil {
					b.Fatal(err)
				}
				res, err := s.Solve(b.Context(), out)
				if err != nil {
					b.Fatal(err)
				}
				if len(res) != benchVertices {
					b.Fatalf("solve reached %d vertices, want %d", len(res), benchVertices)
				}
			}
			reportPerVertex(b)
		})
		b.Run(g.name+"/cached", func(b *testing.B) {
			idx := newMemIndex()
			warm, err := New((&fakeOps{}).resolve, idx)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := warm.Solve(b.Context(), out); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				f := &fakeOps{}
				s, err := New(f.resolve, idx)
				if err != nil {
					b.Fatal(err)
				}
				res, err := s.Solve(b.Context(), out)
				if err != nil {
					b.Fatal(err)
				}
				if !res[out.Digest()].Cached {
					b.Fatal("the output was not a cache hit")
				}
			}
			reportPerVertex(b)
		})
	}
}

func reportPerVertex(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchVertices), "ns/vertex")
}
