//go:build !linux

package fscopy

import (
	"context"
	"errors"

	digest "github.com/opencontainers/go-digest"
)

// Copy is implemented on Linux only.
func Copy(ctx context.Context, srcRoot, dstRoot string, opt CopyOptions) error {
	return errors.ErrUnsupported
}

// Mkdir is implemented on Linux only.
func Mkdir(ctx context.Context, dstRoot string, opt MkdirOptions) error {
	return errors.ErrUnsupported
}

// Mkfile is implemented on Linux only.
func Mkfile(ctx context.Context, root string, opt MkfileOptions) error {
	return errors.ErrUnsupported
}

// Checksum is implemented on Linux only.
func Checksum(ctx context.Context, srcRoot string, src []string, allowWildcard, followSymlinks bool) (digest.Digest, error) {
	return "", errors.ErrUnsupported
}

// Checksum is implemented on Linux only.
func (h *Hasher) Checksum(ctx context.Context, srcRoot string, opt ChecksumOptions) (digest.Digest, error) {
	return "", errors.ErrUnsupported
}
