//go:build !linux

package runc

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/builderdev/builder/worker"
)

// Executor needs Linux namespaces; on other systems NewExecutor fails with
// errors.ErrUnsupported.
type Executor struct{}

var _ worker.Executor = (*Executor)(nil)

// Option configures an Executor.
type Option func(*options) error

type options struct{}

// NewExecutor returns errors.ErrUnsupported: sandboxes need Linux.
func NewExecutor(stateDir string, opts ...Option) (*Executor, error) {
	return nil, fmt.Errorf("creating executor: %w", errors.ErrUnsupported)
}

// Run is unsupported outside Linux.
func (e *Executor) Run(ctx context.Context, spec worker.ExecSpec) error {
	return errors.ErrUnsupported
}

// CleanStale is unsupported outside Linux.
func (e *Executor) CleanStale(ctx context.Context) error { return errors.ErrUnsupported }

// Init never has a sandbox to set up outside Linux; it exits like a failed init.
func Init() {
	fmt.Fprintln(os.Stderr, "sandboxes are not supported on this system")
	os.Exit(255)
}
