package exporter

import (
	"context"
	"io"
	"os"

	"github.com/builderdev/builder/cache"
)

// WriteFile writes dest through write with cache.WriteAtomic, and gives up (leaving
// dest as it was) if ctx is done by the time write returns.
func WriteFile(ctx context.Context, dest string, write func(f *os.File) error) error {
	return cache.WriteAtomic(dest, func(f *os.File) error {
		if err := write(f); err != nil {
			return err
		}
		return ctx.Err()
	})
}

// CancelWriter returns a writer that fails once ctx is done, for sinks whose library
// takes no context.
func CancelWriter(ctx context.Context, w io.Writer) io.Writer {
	return &cancelWriter{ctx: ctx, w: w}
}

type cancelWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *cancelWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
