package exporter

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteFile runs write on a new temporary file in dest's directory and, if write
// succeeds and ctx is still live, syncs it and renames it to dest. On any failure the
// temporary file is removed and dest is left as it was. write may seek and read f.
func WriteFile(ctx context.Context, dest string, write func(f *os.File) error) (err error) {
	dir, base := filepath.Split(dest)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("creating temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// CreateTemp makes 0600 files; an exported image is meant to be shared.
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), dest)
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
