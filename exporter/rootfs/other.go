//go:build !linux

package rootfs

import (
	"context"
	"errors"
	"io"
	"time"
)

// Options configures WriteTar and WriteDir.
type Options struct {
	Epoch *time.Time
}

// WriteTar needs Linux.
func WriteTar(ctx context.Context, src string, w io.Writer, opts Options) error {
	return errors.ErrUnsupported
}

// WriteDir needs Linux.
func WriteDir(ctx context.Context, src, dest string, opts Options) error {
	return errors.ErrUnsupported
}
