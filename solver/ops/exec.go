package ops

import (
	"context"
	"io"

	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/snapshot"
	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
	"github.com/builderdev/builder/worker"
	"github.com/builderdev/builder/worker/diff"
)

// execOp runs a process over an overlay of its root input; the overlay's upper dir is
// the new layer.
type execOp struct {
	d  Deps
	op *llb.ExecOp
}

func (*execOp) CacheKey(context.Context, []solver.Result) (digest.Digest, error) { return "", nil }

func (o *execOp) Exec(ctx context.Context, inputs []solver.Result, logs io.Writer) (cache.Ref, error) {
	base := inputRef(inputs, o.op.Root).Ref
	a, err := o.d.Snapshots.Prepare(ctx, base.SnapshotIDs(), snapshot.WithInitLayer())
	if err != nil {
		return cache.Ref{}, err
	}
	defer a.Discard(ctx)
	err = o.d.Executor.Run(ctx, worker.ExecSpec{
		Rootfs:  a.Root(),
		Args:    o.op.Args,
		Env:     o.op.Env,
		Cwd:     o.op.Cwd,
		User:    o.op.User,
		Network: o.op.Network,
		Stdout:  logs,
		Stderr:  logs,
	})
	if err != nil {
		return cache.Ref{}, err
	}
	return commit(ctx, o.d, a, base)
}

// commit turns an active snapshot's upper dir into a layer on top of base. A step that
// changed nothing adds no layer.
func commit(ctx context.Context, d Deps, a *snapshot.Active, base cache.Ref) (cache.Ref, error) {
	if err := a.Unmount(ctx); err != nil {
		return cache.Ref{}, err
	}
	l, empty, err := diff.WriteLayer(ctx, d.Content, a.UpperDir())
	if err != nil {
		return cache.Ref{}, err
	}
	if empty {
		return base, nil
	}
	if err := a.Commit(ctx, cache.SnapshotID(l.DiffID)); err != nil {
		return cache.Ref{}, err
	}
	return base.WithLayer(l), nil
}
