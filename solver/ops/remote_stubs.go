package ops

import (
	"fmt"

	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
)

// Placeholders until the remote sources land; each helper replaces its own.

func newHTTPOp(_ Deps, op *llb.SourceOp) (solver.Op, error) {
	return nil, fmt.Errorf("source %q: downloading URLs is not supported yet", op.Identifier)
}

func newGitOp(_ Deps, op *llb.SourceOp) (solver.Op, error) {
	return nil, fmt.Errorf("source %q: git sources are not supported yet", op.Identifier)
}

func newOCILayoutOp(_ Deps, op *llb.SourceOp) (solver.Op, error) {
	return nil, fmt.Errorf("source %q: OCI layout sources are not supported yet", op.Identifier)
}
