// Package ops implements the solver's ops for each llb op kind: image and local sources,
// exec (RUN in a sandbox over an overlay snapshot) and file (COPY, mkdir). It is where the
// solver meets the worker, the snapshotter, the content store and the registry.
package ops

import (
	"context"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/builderdev/builder/cache/content"
	"github.com/builderdev/builder/cache/snapshot"
	"github.com/builderdev/builder/internal/registry"
	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
	"github.com/builderdev/builder/worker"
)

// ImageSource is what the image source op needs of a registry client.
type ImageSource interface {
	Resolve(ctx context.Context, ref string) (*registry.Resolved, error)
	FetchLayer(ctx context.Context, ref string, desc v1.Descriptor) error
}

// Deps are the parts the ops run on.
type Deps struct {
	Content   *content.Store
	Snapshots *snapshot.Snapshotter
	Executor  worker.Executor
	Images    ImageSource
	// Locals maps local source names (llb.Local) to host directories.
	Locals map[string]string
}

// Resolver returns the solver.ResolveFunc that binds vertices to ops running on d.
func Resolver(d Deps) solver.ResolveFunc {
	return func(v *llb.Vertex) (solver.Op, error) {
		switch op := v.Op().(type) {
		case *llb.SourceOp:
			switch {
			case strings.HasPrefix(op.Identifier, llb.ImageScheme):
				return &imageOp{d: d, ref: strings.TrimPrefix(op.Identifier, llb.ImageScheme)}, nil
			case strings.HasPrefix(op.Identifier, llb.LocalScheme):
				name := strings.TrimPrefix(op.Identifier, llb.LocalScheme)
				dir, ok := d.Locals[name]
				if !ok {
					return nil, fmt.Errorf("local source %q was not provided", name)
				}
				return localOp{dir: dir}, nil
			}
			return nil, fmt.Errorf("unsupported source %q", op.Identifier)
		case *llb.ExecOp:
			return &execOp{d: d, op: op}, nil
		case *llb.FileOp:
			return &fileOp{d: d, op: op}, nil
		}
		return nil, fmt.Errorf("unsupported op %T", v.Op())
	}
}

// inputRef returns input i's result, or the empty filesystem for llb.NoInput.
func inputRef(inputs []solver.Result, i int) solver.Result {
	if i == llb.NoInput {
		return solver.Result{}
	}
	return inputs[i]
}
