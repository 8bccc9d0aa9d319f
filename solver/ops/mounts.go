package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
	"github.com/builderdev/builder/worker"
	"github.com/builderdev/builder/worker/fscopy"
)

// defaultSSHID is the agent a ssh mount uses when it names none (--ssh default).
const defaultSSHID = "default"

// runMounts is what one exec's RUN --mount mounts need while the process runs: the
// sandbox mounts, environment only the process sees (secrets), and what to undo after.
type runMounts struct {
	mounts []worker.Mount
	env    []string
	points mountPoints
	// dir holds this run's secret files, context copies and sockets; removed last.
	dir      string
	releases []func() error
}

// mountName names a mount in errors ("cache /root/.cache").
func mountName(m llb.Mount) string {
	if m.Target == "" && m.Env != "" {
		return m.Type + " env " + m.Env
	}
	return m.Type + " " + m.Target
}

// mountSource is m.Source as a path inside its input, "/" for the whole input.
func mountSource(m llb.Mount) string {
	if m.Source == "" {
		return "/"
	}
	return path.Clean("/" + m.Source)
}

// setupMounts prepares every mount of the op over rootfs. On error, whatever was set up
// is already released.
func (o *execOp) setupMounts(ctx context.Context, rootfs string, inputs []solver.Result) (_ *runMounts, retErr error) {
	rm := &runMounts{}
	if len(o.op.Mounts) == 0 {
		return rm, nil
	}
	defer func() {
		if retErr != nil {
			rm.release()
		}
	}()
	if o.d.TempDir != "" {
		if err := os.MkdirAll(o.d.TempDir, 0o700); err != nil {
			return nil, fmt.Errorf("creating mount directory: %w", err)
		}
	}
	dir, err := os.MkdirTemp(o.d.TempDir, "run-")
	if err != nil {
		return nil, fmt.Errorf("creating mount directory: %w", err)
	}
	rm.dir = dir
	for i, m := range o.op.Mounts {
		if err := o.setupMount(ctx, rm, i, m, inputs); err != nil {
			return nil, fmt.Errorf("mounting %s: %w", mountName(m), err)
		}
	}
	for _, wm := range rm.mounts {
		if err := rm.points.record(rootfs, wm.Target); err != nil {
			return nil, fmt.Errorf("mounting %s %s: %w", wm.Type, wm.Target, err)
		}
	}
	return rm, nil
}

func (o *execOp) setupMount(ctx context.Context, rm *runMounts, i int, m llb.Mount, inputs []solver.Result) error {
	target := m.Target
	if m.Type == llb.MountSecret && target == "" && m.Env == "" {
		target = "/run/secrets/" + m.SecretID
	}
	if target != "" {
		if !path.IsAbs(target) {
			return fmt.Errorf("target %q is not absolute", target)
		}
		target = path.Clean(target)
	}
	switch m.Type {
	case llb.MountBind:
		src, ro, err := o.bindSource(ctx, rm, i, m, inputs)
		if err != nil {
			return err
		}
		rm.add(worker.Mount{Type: worker.MountBind, Source: src, Target: target, ReadOnly: ro})
	case llb.MountCache:
		return o.cacheMount(ctx, rm, m, target, inputs)
	case llb.MountTmpfs:
		rm.add(worker.Mount{Type: worker.MountTmpfs, Target: target, Size: m.Size})
	case llb.MountSecret:
		return o.secretMount(ctx, rm, i, m, target)
	case llb.MountSSH:
		return o.sshMount(rm, i, m, target)
	default:
		return fmt.Errorf("unknown mount type %q", m.Type)
	}
	return nil
}

func (rm *runMounts) add(m worker.Mount) { rm.mounts = append(rm.mounts, m) }

func (rm *runMounts) onRelease(f func() error) { rm.releases = append(rm.releases, f) }

// release undoes the setup, last first, and removes the run's directory (and with it
// every secret file). It is safe to call twice.
func (rm *runMounts) release() error {
	var errs []error
	for i := len(rm.releases) - 1; i >= 0; i-- {
		errs = append(errs, rm.releases[i]())
	}
	rm.releases = nil
	if rm.dir != "" {
		errs = append(errs, os.RemoveAll(rm.dir))
		rm.dir = ""
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("releasing mounts: %w", err)
	}
	return nil
}

// newDir creates a directory for mount i of the run with the given mode.
func (rm *runMounts) newDir(i int, kind string, mode fs.FileMode) (string, error) {
	p := filepath.Join(rm.dir, fmt.Sprintf("%d-%s", i, kind))
	if err := os.Mkdir(p, 0o700); err != nil {
		return "", err
	}
	// Chmod after Mkdir: the umask must not decide what the sandbox sees.
	return p, os.Chmod(p, mode)
}

// bindSource returns the host path to bind for m and whether it is read-only.
func (o *execOp) bindSource(ctx context.Context, rm *runMounts, i int, m llb.Mount, inputs []solver.Result) (string, bool, error) {
	src := mountSource(m)
	if m.Input == llb.NoInput {
		dir, err := rm.newDir(i, "empty", 0o755)
		if err != nil {
			return "", false, err
		}
		p, err := resolveIn(dir, src, "empty source")
		return p, true, err
	}
	ref := inputs[m.Input].Ref
	if ref.LocalDir != "" {
		return o.contextBindSource(ctx, rm, i, m, ref)
	}
	var root string
	if m.ReadWrite {
		// Writes land in a throwaway upper dir, never in the input's layers.
		a, err := o.d.Snapshots.Prepare(ctx, ref.SnapshotIDs())
		if err != nil {
			return "", false, err
		}
		rm.onRelease(func() error { return a.Discard(context.WithoutCancel(ctx)) })
		root = a.Root()
	} else {
		r, release, err := o.d.Snapshots.View(ctx, ref.SnapshotIDs())
		if err != nil {
			return "", false, err
		}
		rm.onRelease(release)
		root = r
	}
	p, err := resolveIn(root, src, "source stage")
	return p, !m.ReadWrite, err
}

// contextBindSource binds the build context. The context dir itself is bound only
// read-only and when .dockerignore hides nothing; otherwise the mount gets a copy of what
// the context keeps, so the process neither sees ignored files nor writes the user's.
func (o *execOp) contextBindSource(ctx context.Context, rm *runMounts, i int, m llb.Mount, ref cache.Ref) (string, bool, error) {
	src := mountSource(m)
	p, err := resolveIn(ref.LocalDir, src, contextSourceName)
	if err != nil || (len(ref.LocalIgnore) == 0 && !m.ReadWrite) {
		return p, true, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", false, err
	}
	dir, err := rm.newDir(i, "context", 0o700)
	if err != nil {
		return "", false, err
	}
	dest, bindPath := "/", dir
	if !fi.IsDir() {
		dest = "/" + filepath.Base(p)
		bindPath = filepath.Join(dir, dest)
	}
	err = fscopy.Copy(ctx, ref.LocalDir, dir, fscopy.CopyOptions{
		Src:            []string{src},
		Dest:           dest,
		FollowSymlinks: true,
		PreserveOwner:  true,
		SourceName:     contextSourceName,
		Ignore:         ref.LocalIgnore,
	})
	if err != nil {
		return "", false, fmt.Errorf("copying %s of the build context: %w", src, err)
	}
	if fi.IsDir() {
		if err := copyDirMeta(fi, dir); err != nil {
			return "", false, err
		}
	}
	return bindPath, !m.ReadWrite, nil
}

// copyDirMeta gives dst the permission bits and owner of the directory fi describes.
func copyDirMeta(fi fs.FileInfo, dst string) error {
	if err := os.Chmod(dst, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	uid, gid := fileOwner(fi)
	return os.Lchown(dst, uid, gid)
}

// resolveIn resolves p inside root, following symlinks without leaving root, and
// checks that it exists.
func resolveIn(root, p, what string) (string, error) {
	full, err := securejoin.SecureJoin(root, p)
	if err != nil {
		return "", fmt.Errorf("resolving %s in %s: %w", p, what, err)
	}
	if _, err := os.Stat(full); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", &fscopy.NotFoundError{Path: p, Source: what}
		}
		return "", err
	}
	return full, nil
}

// fileOwner returns the uid and gid fi was read with.
func fileOwner(fi fs.FileInfo) (int, int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return 0, 0
}

func (o *execOp) cacheMount(ctx context.Context, rm *runMounts, m llb.Mount, target string, inputs []solver.Result) error {
	id := m.CacheID
	if id == "" {
		id = target
	}
	var seed solver.Result
	if m.Input != llb.NoInput {
		seed = inputs[m.Input]
	}
	create := func(dir string) error {
		if err := os.Chmod(dir, 0o755); err != nil {
			return err
		}
		if m.Input != llb.NoInput {
			if err := o.seedCache(ctx, dir, seed.Ref, mountSource(m)); err != nil {
				return err
			}
		}
		if m.Mode != nil || m.Input == llb.NoInput {
			if err := os.Chmod(dir, fs.FileMode(orDefault(m.Mode, 0o755))&fs.ModePerm); err != nil {
				return err
			}
		}
		if m.UID != nil || m.GID != nil || m.Input == llb.NoInput {
			uid, gid := -1, -1
			if m.UID != nil || m.Input == llb.NoInput {
				uid = int(orDefault(m.UID, 0))
			}
			if m.GID != nil || m.Input == llb.NoInput {
				gid = int(orDefault(m.GID, 0))
			}
			return os.Lchown(dir, uid, gid)
		}
		return nil
	}
	cd, err := acquireCacheDir(ctx, o.d.CacheMounts, cacheKey(id, seed.Key), m.Sharing, create)
	if err != nil {
		return err
	}
	rm.onRelease(cd.release)
	rm.add(worker.Mount{Type: worker.MountBind, Source: cd.path, Target: target})
	return nil
}

// seedCache copies src of ref into a new cache dir (RUN --mount=type=cache,from=...).
func (o *execOp) seedCache(ctx context.Context, dir string, ref cache.Ref, src string) error {
	root, name := ref.LocalDir, contextSourceName
	if root == "" {
		r, release, err := o.d.Snapshots.View(ctx, ref.SnapshotIDs())
		if err != nil {
			return err
		}
		defer release()
		root, name = r, "source stage"
	}
	p, err := resolveIn(root, src, name)
	if err != nil {
		return err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("cache source %s is not a directory", src)
	}
	err = fscopy.Copy(ctx, root, dir, fscopy.CopyOptions{
		Src: []string{src}, Dest: "/", FollowSymlinks: true, PreserveOwner: true,
		SourceName: name, Ignore: ref.LocalIgnore,
	})
	if err != nil {
		return fmt.Errorf("seeding cache from %s: %w", src, err)
	}
	return copyDirMeta(fi, dir)
}

func (o *execOp) secretMount(ctx context.Context, rm *runMounts, i int, m llb.Mount, target string) error {
	if o.d.Secrets == nil {
		if m.Required {
			return fmt.Errorf("secret %s: %w", m.SecretID, ErrSecretNotFound)
		}
		return nil
	}
	data, err := o.d.Secrets.GetSecret(ctx, m.SecretID)
	if err != nil {
		if errors.Is(err, ErrSecretNotFound) && !m.Required {
			return nil
		}
		return err
	}
	if m.Env != "" {
		rm.env = append(rm.env, m.Env+"="+string(data))
	}
	if target == "" {
		return nil
	}
	dir, err := rm.newDir(i, "secret", 0o700)
	if err != nil {
		return err
	}
	file := filepath.Join(dir, "secret")
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing secret file: %w", err)
	}
	if err := os.Lchown(file, int(orDefault(m.UID, 0)), int(orDefault(m.GID, 0))); err != nil {
		return err
	}
	if err := os.Chmod(file, fs.FileMode(orDefault(m.Mode, 0o400))&fs.ModePerm); err != nil {
		return err
	}
	rm.onRelease(func() error { return os.RemoveAll(dir) })
	rm.add(worker.Mount{Type: worker.MountBind, Source: file, Target: target, ReadOnly: true})
	return nil
}

func (o *execOp) sshMount(rm *runMounts, i int, m llb.Mount, target string) error {
	id := m.SSHID
	if id == "" {
		id = defaultSSHID
	}
	agent, ok := o.d.SSH[id]
	if !ok {
		if m.Required {
			return fmt.Errorf("no ssh agent %q was given to the build (--ssh %s)", id, id)
		}
		return nil
	}
	dir, err := rm.newDir(i, "ssh", 0o700)
	if err != nil {
		return err
	}
	p, err := startSSHProxy(filepath.Join(dir, "agent.sock"), agent,
		fs.FileMode(orDefault(m.Mode, 0o600))&fs.ModePerm, int(orDefault(m.UID, 0)), int(orDefault(m.GID, 0)))
	if err != nil {
		return err
	}
	rm.onRelease(p.close)
	rm.add(worker.Mount{Type: worker.MountBind, Source: p.path, Target: target})
	return nil
}

// mountPoints records, before a run, what of the mount targets the rootfs lacks, so
// that the sandbox's mount points can be taken out again and the layer shows only what
// the process did.
type mountPoints struct {
	// stubs are rootfs paths (through the overlay) missing before the run.
	stubs []string
	// dirs are the existing directories that will receive a stub, and their
	// ancestors: creating an entry copies them up into the upper dir.
	dirs map[string]dirState // path relative to the rootfs → state before the run
}

// dirState is what a directory looked like before the run.
type dirState struct {
	mode         uint32
	uid, gid     uint32
	atime, mtime unix.Timespec
}

func statDir(p string) (dirState, bool, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return dirState{}, false, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return dirState{}, false, nil
	}
	return dirState{mode: st.Mode, uid: st.Uid, gid: st.Gid, atime: st.Atim, mtime: st.Mtim}, true, nil
}

// record notes the parts of target missing in rootfs. Symlinks resolve inside rootfs,
// as the sandbox resolves them.
func (mp *mountPoints) record(rootfs, target string) error {
	p, err := securejoin.SecureJoin(rootfs, target)
	if err != nil {
		return err
	}
	missing := 0
	for len(p) > len(rootfs) {
		_, err := os.Lstat(p)
		if err == nil {
			break
		}
		if errors.Is(err, unix.ENOTDIR) {
			// A file on the way: the sandbox will refuse the mount.
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		mp.stubs = append(mp.stubs, p)
		missing++
		p = filepath.Dir(p)
	}
	if missing == 0 {
		return nil
	}
	for ; len(p) > len(rootfs); p = filepath.Dir(p) {
		rel, err := filepath.Rel(rootfs, p)
		if err != nil {
			return err
		}
		if _, ok := mp.dirs[rel]; ok {
			continue
		}
		st, isDir, err := statDir(p)
		if err != nil {
			return err
		}
		if !isDir {
			return nil
		}
		if mp.dirs == nil {
			mp.dirs = map[string]dirState{}
		}
		mp.dirs[rel] = st
	}
	return nil
}

// removeStubs removes, through the mounted rootfs, the mount points the run created:
// empty dirs, and the empty file made for a file or socket target. A stub the process
// put something in stays, and so do its parents. The dirs that held stubs get their
// times back.
func (mp *mountPoints) removeStubs(rootfs string) error {
	stubs := slices.Clone(mp.stubs)
	slices.SortFunc(stubs, deepestFirst)
	stubs = slices.Compact(stubs)
	for _, p := range stubs {
		fi, err := os.Lstat(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("removing mount point: %w", err)
		}
		if !fi.IsDir() && !(fi.Mode().IsRegular() && fi.Size() == 0) {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("removing mount point: %w", err)
		}
	}
	for rel, before := range mp.dirs {
		p := filepath.Join(rootfs, rel)
		now, isDir, err := statDir(p)
		if err != nil || !isDir || now.mtime == before.mtime {
			// Untouched dirs stay untouched: setting times would copy them up.
			continue
		}
		ts := []unix.Timespec{before.atime, before.mtime}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("restoring times of %s: %w", rel, err)
		}
	}
	return nil
}

// prune removes from an unmounted upper dir the directories that are there only
// because a mount point was created in them: empty, not opaque, and with the mode,
// owner and mtime they had before. The lower dir's copy then shows through unchanged.
func (mp *mountPoints) prune(upper string) error {
	rels := slices.Collect(maps.Keys(mp.dirs))
	slices.SortFunc(rels, deepestFirst)
	for _, rel := range rels {
		p := filepath.Join(upper, rel)
		now, isDir, err := statDir(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("pruning mount point parents: %w", err)
		}
		before := mp.dirs[rel]
		if !isDir || now.mode != before.mode || now.uid != before.uid || now.gid != before.gid || now.mtime != before.mtime {
			continue
		}
		if empty, err := dirIsEmpty(p); err != nil || !empty {
			continue
		}
		if _, err := unix.Lgetxattr(p, "trusted.overlay.opaque", nil); err == nil {
			continue // the process replaced this dir
		}
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("pruning mount point parents: %w", err)
		}
	}
	return nil
}

func deepestFirst(a, b string) int {
	if d := strings.Count(b, "/") - strings.Count(a, "/"); d != 0 {
		return d
	}
	return strings.Compare(a, b)
}

func dirIsEmpty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}

func orDefault(p *uint32, def uint32) uint32 {
	if p == nil {
		return def
	}
	return *p
}
