package gc

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// LockName is the file under the store root that builds lock shared and prune
// exclusively.
const LockName = "gc.lock"

// ErrBusy is returned by Exclusive without waiting when another process uses the root.
var ErrBusy = errors.New("the store is in use by another builder process")

// Lock is a held lock on root/gc.lock.
//
// The locks are POSIX record locks (fcntl), which belong to the process, not to an
// open file: every store a process opens shares one lease, a process never waits for
// itself, and taking the lock exclusively converts the process's shared lease in place.
// They are kept on a raw descriptor, without an *os.File whose finalizer could close it
// (and so drop the process's lease) while the store is still in use; the lease ends
// with the process or with Release.
type Lock struct {
	once sync.Once
	fd   int
	err  error
}

// Release closes the lock's descriptor, which drops every lock this process holds on
// the file (that is how POSIX locks work): call it when the process is done with the
// store. Later calls do nothing.
func (l *Lock) Release() error {
	l.once.Do(func() { l.err = unix.Close(l.fd) })
	return l.err
}

// Shared takes the lease every process using the store holds, and waits while a
// prune holds the lock exclusively (or until ctx ends). Any number of processes share it.
func Shared(ctx context.Context, root string) (*Lock, error) {
	return lock(ctx, root, unix.F_RDLCK, true)
}

// Exclusive takes the lock prune holds, converting this process's shared lease. Without
// wait a lock another process holds is ErrBusy and the lease stays as it was. With wait
// the process first drops its own lease, so that two processes waiting for each other
// to finish cannot both hold on, then waits until no other process uses the root.
func Exclusive(ctx context.Context, root string, wait bool) (*Lock, error) {
	return lock(ctx, root, unix.F_WRLCK, wait)
}

// lock polls rather than blocking in F_SETLKW, which could not be cancelled.
func lock(ctx context.Context, root string, typ int16, wait bool) (*Lock, error) {
	path := filepath.Join(root, LockName)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if typ == unix.F_WRLCK && wait {
		if err := setLock(fd, unix.F_UNLCK); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("unlocking %s: %w", path, err)
		}
	}
	delay := 2 * time.Millisecond
	for {
		err := setLock(fd, typ)
		switch {
		case err == nil:
			return &Lock{fd: fd}, nil
		case errors.Is(err, unix.EINTR):
			continue
		case !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES):
			unix.Close(fd)
			return nil, fmt.Errorf("locking %s: %w", path, err)
		case !wait:
			unix.Close(fd)
			return nil, ErrBusy
		}
		select {
		case <-ctx.Done():
			unix.Close(fd)
			return nil, fmt.Errorf("waiting for %s: %w", path, context.Cause(ctx))
		case <-time.After(delay):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// setLock sets the whole-file lock typ without waiting.
func setLock(fd int, typ int16) error {
	return unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &unix.Flock_t{Type: typ, Whence: 0, Start: 0, Len: 0})
}
