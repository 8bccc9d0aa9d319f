package dockerfile

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/builderdev/builder/llb"
)

// sourceDateEpochArg is the build arg BuildKit reads the reproducible-build time from.
const sourceDateEpochArg = "SOURCE_DATE_EPOCH"

// sourceDateEpoch reads SOURCE_DATE_EPOCH from the build args or the global ARGs
// (filled before, so a global "ARG SOURCE_DATE_EPOCH=N" is a default). Empty means
// unset. Like any build arg, RUN sees it only where a stage declares it with ARG.
func (c *converter) sourceDateEpoch() error {
	v, ok := c.opt.BuildArgs[sourceDateEpochArg]
	if !ok {
		v, ok = lookupEnv(c.global, sourceDateEpochArg)
	}
	if !ok || v == "" {
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("invalid %s %q: want Unix seconds", sourceDateEpochArg, v)
	}
	c.epoch = &n
	return nil
}

// stamp gives the file op that made st the build's epoch, so its layer's times are
// clamped (and its cache key differs from a build without one). Exec ops get it
// where they are made.
func (c *converter) stamp(st llb.State, err error) (llb.State, error) {
	if err != nil || c.epoch == nil || st.IsScratch() {
		return st, err
	}
	v := st.Vertex()
	op, ok := v.Op().(*llb.FileOp)
	if !ok {
		return st, errors.New("stamping the source date epoch: not a file op")
	}
	cp := *op
	cp.SourceDateEpoch = c.epoch
	nv, err := llb.NewVertex(&cp, v.Inputs(), v.Meta())
	if err != nil {
		return llb.State{}, err
	}
	return llb.FromVertex(nv), nil
}

// epochTime is the epoch as a time, nil without one.
func (c *converter) epochTime() *time.Time {
	if c.epoch == nil {
		return nil
	}
	t := time.Unix(*c.epoch, 0).UTC()
	return &t
}
