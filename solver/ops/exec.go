package ops

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/snapshot"
	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
	"github.com/builderdev/builder/worker"
	"github.com/builderdev/builder/worker/diff"
	"github.com/builderdev/builder/worker/fscopy"
)

// execOp runs a process over an overlay of its root input; the overlay's upper dir is
// the new layer. RUN --mount mounts are set up around the process and never reach it.
type execOp struct {
	d      Deps
	op     *llb.ExecOp
	hasher fscopy.Hasher
}

// CacheKey adds checksums of the build context bound into the sandbox: the op's digest
// names the local source, not its content. Layer inputs are in the key already.
func (o *execOp) CacheKey(ctx context.Context, inputs []solver.Result) (digest.Digest, error) {
	var sums []string
	for _, m := range o.op.Mounts {
		if m.Type != llb.MountBind || m.Input == llb.NoInput {
			continue
		}
		src := inputs[m.Input].Ref
		if src.LocalDir == "" {
			continue
		}
		sum, err := o.hasher.Checksum(ctx, src.LocalDir, fscopy.ChecksumOptions{
			Src:            []string{mountSource(m)},
			FollowSymlinks: true,
			SourceName:     contextSourceName,
			Ignore:         src.LocalIgnore,
		})
		if err != nil {
			return "", fmt.Errorf("mounting %s: %w", mountName(m), err)
		}
		sums = append(sums, m.Target+" "+sum.String())
	}
	if len(sums) == 0 {
		return "", nil
	}
	return digest.FromString(strings.Join(sums, "\n")), nil
}

func (o *execOp) Exec(ctx context.Context, inputs []solver.Result, logs io.Writer) (cache.Ref, error) {
	if err := realizeInputs(ctx, o.d, inputs); err != nil {
		return cache.Ref{}, err
	}
	base := inputRef(inputs, o.op.Root).Ref
	a, err := o.d.Snapshots.Prepare(ctx, base.SnapshotIDs(), snapshot.WithInitLayer())
	if err != nil {
		return cache.Ref{}, err
	}
	defer a.Discard(ctx)
	rm, err := o.setupMounts(ctx, a.Root(), inputs)
	if err != nil {
		return cache.Ref{}, err
	}
	defer rm.release()
	env := slices.Clone(o.op.Env)
	for _, kv := range o.op.ProxyEnv {
		env = llb.WithEnv(env, kv)
	}
	for _, kv := range rm.env {
		env = llb.WithEnv(env, kv)
	}
	err = o.d.Executor.Run(ctx, worker.ExecSpec{
		Rootfs:  a.Root(),
		Args:    o.op.Args,
		Env:     env,
		Cwd:     o.op.Cwd,
		User:    o.op.User,
		Network: o.op.Network,
		Stdout:  logs,
		Stderr:  logs,
		Mounts:  rm.mounts,
	})
	// Secrets leave the disk and cache locks go to the next user as soon as the
	// process is gone, whatever its exit.
	if relErr := rm.release(); err == nil {
		err = relErr
	}
	if err != nil {
		return cache.Ref{}, err
	}
	// Through the mounted overlay, so the mount points vanish from the upper dir.
	if err := rm.points.removeStubs(a.Root()); err != nil {
		return cache.Ref{}, err
	}
	if err := a.Unmount(ctx); err != nil {
		return cache.Ref{}, err
	}
	if err := rm.points.prune(a.UpperDir()); err != nil {
		return cache.Ref{}, err
	}
	return commit(ctx, o.d, a, base, o.op.SourceDateEpoch)
}

// commit turns an active snapshot's upper dir into a layer on top of base. A step that
// changed nothing adds no layer. With an epoch (SOURCE_DATE_EPOCH, Unix seconds) the
// layer's times are clamped to it.
func commit(ctx context.Context, d Deps, a *snapshot.Active, base cache.Ref, epoch *int64) (cache.Ref, error) {
	if err := a.Unmount(ctx); err != nil {
		return cache.Ref{}, err
	}
	var opts []diff.Option
	if epoch != nil {
		opts = append(opts, diff.WithSourceDateEpoch(time.Unix(*epoch, 0)))
	}
	l, empty, err := diff.WriteLayer(ctx, d.Content, a.UpperDir(), opts...)
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
