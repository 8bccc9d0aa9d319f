//go:build !linux

package ocilayout

import "errors"

// exchange is unavailable here; swapDirs falls back to two renames.
func exchange(a, b string) error { return errors.ErrUnsupported }
