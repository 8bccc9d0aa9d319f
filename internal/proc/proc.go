// Package proc tells the temporary files of builds still running on a root from those
// of killed builds. Temp names carry the owning pid as "<pid>-<rest>"; a name whose pid
// is gone is stale.
package proc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Alive reports whether pid names a running process. EPERM means it exists but belongs
// to someone else, which still makes its files off limits.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Owner returns the pid a "<pid>-<rest>" name carries, 0 when it carries none.
func Owner(name string) int {
	s, _, ok := strings.Cut(name, "-")
	if !ok {
		return 0
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// Stale lists the entries of dir whose owner pid is no longer running. Entries without
// an owner pid are left alone.
func Stale(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		if pid := Owner(e.Name()); pid != 0 && !Alive(pid) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out, nil
}

// TempDir makes a directory in parent named for this process, so Stale finds it if
// the process dies before removing it.
func TempDir(parent, pattern string) (string, error) {
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", fmt.Errorf("creating %s: %w", parent, err)
	}
	return os.MkdirTemp(parent, fmt.Sprintf("%d-%s", os.Getpid(), pattern))
}
