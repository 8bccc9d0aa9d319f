//go:build linux

package snapshot

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// overlayOptions are fixed so that an upper dir is always a plain, portable diff:
// no index entries, no metacopy-only files and no redirect xattrs the differ would
// have to understand.
var overlayOptions = []string{"index=off", "metacopy=off", "redirect_dir=off"}

// overlay describes one overlay mount. lower is top first, as overlayfs wants it.
type overlay struct {
	lower        []string
	upper, work  string // both empty for a read-only mount
	target       string
	readOnlyView bool
}

// mount mounts o at o.target. The classic mount(2) data string is limited to one
// page, so long chains (or paths overlayfs would need escaped) go through the new
// mount API, where every lower dir is its own fsconfig("lowerdir+") call.
func (o overlay) mount() error {
	if data, ok := o.data(); ok {
		var flags uintptr
		if o.readOnlyView {
			flags |= unix.MS_RDONLY
		}
		if err := unix.Mount("overlay", o.target, "overlay", flags, data); err != nil {
			return fmt.Errorf("mounting overlay at %s: %w", o.target, err)
		}
		return nil
	}
	return o.mountFS()
}

// data returns the mount(2) option string, or false when it cannot be used.
func (o overlay) data() (string, bool) {
	paths := append([]string{o.upper, o.work}, o.lower...)
	for _, p := range paths {
		// overlayfs splits lowerdir on ':' and options on ','; escaping is possible but
		// the new API needs none, so leave such paths to it.
		if strings.ContainsAny(p, ":,\\") {
			return "", false
		}
	}
	opts := []string{"lowerdir=" + strings.Join(o.lower, ":")}
	if o.upper != "" {
		opts = append(opts, "upperdir="+o.upper, "workdir="+o.work)
	}
	opts = append(opts, overlayOptions...)
	data := strings.Join(opts, ",")
	if len(data)+1 > os.Getpagesize() {
		return "", false
	}
	return data, true
}

// mountFS mounts with fsopen/fsconfig/fsmount/move_mount (kernel ≥ 6.8 for lowerdir+).
func (o overlay) mountFS() (retErr error) {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("opening overlay filesystem context: %w", err)
	}
	defer unix.Close(fsfd)
	defer func() {
		if retErr != nil {
			if msg := fsLog(fsfd); msg != "" {
				retErr = fmt.Errorf("%w (%s)", retErr, msg)
			}
		}
	}()
	set := func(key, value string) error {
		if err := unix.FsconfigSetString(fsfd, key, value); err != nil {
			return fmt.Errorf("setting overlay option %s=%s: %w", key, value, err)
		}
		return nil
	}
	for _, l := range o.lower {
		if err := set("lowerdir+", l); err != nil {
			return err
		}
	}
	if o.upper != "" {
		if err := set("upperdir", o.upper); err != nil {
			return err
		}
		if err := set("workdir", o.work); err != nil {
			return err
		}
	}
	for _, opt := range overlayOptions {
		k, v, _ := strings.Cut(opt, "=")
		if err := set(k, v); err != nil {
			return err
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("creating overlay superblock: %w", err)
	}
	var attrs int
	if o.readOnlyView {
		attrs |= unix.MOUNT_ATTR_RDONLY
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return fmt.Errorf("creating overlay mount: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, o.target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attaching overlay at %s: %w", o.target, err)
	}
	return nil
}

// fsLog drains the filesystem context's message log, where overlayfs explains
// why it rejected an option.
func fsLog(fd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	return strings.Join(msgs, "; ")
}

// unmount unmounts target; it is a no-op when nothing is mounted there. A busy
// mount is detached lazily, so that it is never reachable through target again and
// a following RemoveAll cannot descend into it.
func unmount(target string) error {
	err := unix.Unmount(target, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(target, unix.MNT_DETACH)
	}
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmounting %s: %w", target, err)
}
