package ops

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
	"github.com/builderdev/builder/worker/fscopy"
)

// fileOp applies COPY and mkdir actions to an overlay of its base input, without a sandbox.
type fileOp struct {
	d      Deps
	op     *llb.FileOp
	hasher fscopy.Hasher
}

const contextSourceName = "build context"

// CacheKey adds checksums of exactly the files copied from local sources, so a change
// to any other file of the build context leaves the key alone.
func (o *fileOp) CacheKey(ctx context.Context, inputs []solver.Result) (digest.Digest, error) {
	var sums []string
	for _, a := range o.op.Actions {
		if a.Copy == nil {
			continue
		}
		src := inputs[a.Copy.From].Ref
		if src.LocalDir == "" {
			continue
		}
		// Context files are copied as 0:0, so who owns them on this machine must not
		// change the key. AutoExtract is left out: it changes how the files are
		// written, not which are read, and the op digest has it.
		sum, err := o.hasher.Checksum(ctx, src.LocalDir, fscopy.ChecksumOptions{
			Src:            a.Copy.Src,
			AllowWildcard:  a.Copy.AllowWildcard,
			FollowSymlinks: a.Copy.FollowSymlinks,
			SourceName:     contextSourceName,
			Ignore:         src.LocalIgnore,
			Exclude:        a.Copy.Exclude,
			Parents:        a.Copy.Parents,
		})
		if err != nil {
			return "", err
		}
		sums = append(sums, sum.String())
	}
	if len(sums) == 0 {
		return "", nil
	}
	return digest.FromString(strings.Join(sums, "\n")), nil
}

func (o *fileOp) Exec(ctx context.Context, inputs []solver.Result, _ io.Writer) (cache.Ref, error) {
	if err := realizeInputs(ctx, o.d, inputs); err != nil {
		return cache.Ref{}, err
	}
	base := inputRef(inputs, o.op.Base).Ref
	a, err := o.d.Snapshots.Prepare(ctx, base.SnapshotIDs())
	if err != nil {
		return cache.Ref{}, err
	}
	defer a.Discard(ctx)
	for _, act := range o.op.Actions {
		switch {
		case act.Mkdir != nil:
			m := act.Mkdir
			err = fscopy.Mkdir(ctx, a.Root(), fscopy.MkdirOptions{
				Path: m.Path, Mode: os.FileMode(m.Mode), MakeParents: m.MakeParents, Chown: owner(m.Chown),
			})
		case act.Mkfile != nil:
			m := act.Mkfile
			err = fscopy.Mkfile(ctx, a.Root(), fscopy.MkfileOptions{
				Path: m.Path, Data: m.Data, Mode: os.FileMode(m.Mode), Chown: owner(m.Chown),
			})
		case act.Copy != nil:
			err = o.copy(ctx, a.Root(), inputs[act.Copy.From].Ref, act.Copy)
		}
		if err != nil {
			return cache.Ref{}, err
		}
	}
	return commit(ctx, o.d, a, base, o.op.SourceDateEpoch)
}

func (o *fileOp) copy(ctx context.Context, dst string, src cache.Ref, c *llb.CopyAction) error {
	srcRoot, srcName := src.LocalDir, contextSourceName
	if srcRoot == "" {
		srcName = "source stage"
		root, release, err := o.d.Snapshots.View(ctx, src.SnapshotIDs())
		if err != nil {
			return err
		}
		defer release()
		srcRoot = root
	}
	opt := fscopy.CopyOptions{
		Src:            c.Src,
		Dest:           c.Dest,
		Chown:          owner(c.Chown),
		AllowWildcard:  c.AllowWildcard,
		FollowSymlinks: c.FollowSymlinks,
		PreserveOwner:  src.LocalDir == "",
		SourceName:     srcName,
		Ignore:         src.LocalIgnore,
		Exclude:        c.Exclude,
		Parents:        c.Parents,
		AutoExtract:    c.AutoExtract,
	}
	if c.Mode != nil {
		m := os.FileMode(*c.Mode)
		opt.Mode = &m
	}
	if err := fscopy.Copy(ctx, srcRoot, dst, opt); err != nil {
		return fmt.Errorf("copying %s: %w", strings.Join(c.Src, " "), err)
	}
	return nil
}

func owner(c *llb.ChownOpt) *fscopy.Owner {
	if c == nil {
		return nil
	}
	return &fscopy.Owner{User: c.User, Group: c.Group}
}
