package cli

import (
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
)

func TestMadeLayersOnlyWhenAStepRan(t *testing.T) {
	base, err := llb.Image("example.com/base@sha256:"+digest.FromString("m").Encoded(), llb.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	run, err := base.Run(llb.ExecOp{Args: []string{"true"}, Cwd: "/", Network: llb.NetworkHost}, llb.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	b := &platformBuild{out: run.Vertex(), results: map[digest.Digest]solver.Result{
		// The image source is never a hit (its layers stay lazy): it must not count.
		base.Vertex().Digest(): {Cached: false},
		run.Vertex().Digest():  {Cached: true},
	}}
	if b.madeLayers() {
		t.Error("a build whose only step was cached counts as having stored layers")
	}
	b.results[run.Vertex().Digest()] = solver.Result{Cached: false}
	if !b.madeLayers() {
		t.Error("a build that ran its RUN step counts as having stored nothing")
	}
	if (&platformBuild{}).madeLayers() {
		t.Error("an empty build counts as having stored layers")
	}
}
