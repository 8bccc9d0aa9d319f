package content

import (
	"errors"
	"syscall"
)

// processAlive reports whether pid names a running process (used to tell stale temp
// files of killed builds from those of builds still running on the same root).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
