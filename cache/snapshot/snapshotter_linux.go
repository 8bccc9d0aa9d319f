//go:build linux

package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/builderdev/builder/internal/proc"
)

// Directory names under the snapshotter root.
const (
	layersDir = "layers" // committed snapshots, one dir per id
	activeDir = "active" // "<pid>-<random>" dirs of active snapshots and views
	emptyDir  = "empty"  // an always-empty lower dir
	initDir   = "init"   // the init layer
)

// Snapshotter keeps committed snapshots under a root directory and mounts them as
// overlay filesystems. Several processes may share one root: committed dirs appear
// only by an atomic rename, and work in progress lives in per-process dirs that
// CleanStale removes once their process is gone.
type Snapshotter struct {
	root string

	initMu    sync.Mutex
	initReady bool
}

// New returns a Snapshotter rooted at root (for example <store>/snapshots), creating
// its directories when missing.
func New(root string) (*Snapshotter, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("resolving snapshot root %s: %w", root, err)
	}
	// Private dirs are enough: overlayfs reaches its layers with the mounter's
	// (root's) credentials, whoever the sandboxed process runs as.
	for _, d := range []string{layersDir, activeDir, emptyDir} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("creating snapshot root: %w", err)
		}
	}
	return &Snapshotter{root: root}, nil
}

// Dir returns the directory of the committed snapshot id, in overlay form.
func (s *Snapshotter) Dir(id string) string { return filepath.Join(s.root, layersDir, id) }

// Exists reports whether snapshot id has been committed.
func (s *Snapshotter) Exists(id string) bool {
	if validID(id) != nil {
		return false
	}
	fi, err := os.Lstat(s.Dir(id))
	return err == nil && fi.IsDir()
}

// PrepareOpt configures Prepare.
type PrepareOpt func(*prepareOpts)

type prepareOpts struct {
	initLayer bool
}

// WithInitLayer stacks the init layer above the parents: empty dev/, proc/, sys/,
// dev/pts, dev/shm and empty etc/resolv.conf, etc/hosts and etc/hostname. They are
// the sandbox's mount points; because they exist in a lower dir, mounting over them
// never copies them up, so they never leak into the step's layer.
func WithInitLayer() PrepareOpt { return func(o *prepareOpts) { o.initLayer = true } }

// Prepare creates an active snapshot on top of parents (committed ids, base first)
// and mounts it read-write at the returned Active's Root. Release it with Commit or
// Discard.
func (s *Snapshotter) Prepare(ctx context.Context, parents []string, opts ...PrepareOpt) (*Active, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var o prepareOpts
	for _, opt := range opts {
		opt(&o)
	}
	lower, err := s.lowerDirs(parents)
	if err != nil {
		return nil, err
	}
	if o.initLayer {
		initLower, err := s.initLayer()
		if err != nil {
			return nil, err
		}
		lower = append([]string{initLower}, lower...)
	}
	if len(lower) == 0 {
		lower = []string{filepath.Join(s.root, emptyDir)}
	}
	dir, err := s.newActiveDir()
	if err != nil {
		return nil, err
	}
	a := &Active{s: s, dir: dir, upper: filepath.Join(dir, "upper"), work: filepath.Join(dir, "work"), root: filepath.Join(dir, "merged")}
	for _, d := range []string{a.upper, a.work, a.root} {
		if err := os.Mkdir(d, 0o755); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("preparing snapshot: %w", err)
		}
	}
	if err := chmodRoot(a.upper); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("preparing snapshot: %w", err)
	}
	ov := overlay{lower: lower, upper: a.upper, work: a.work, target: a.root}
	if err := ov.mount(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("preparing snapshot: %w", err)
	}
	a.mounted = true
	return a, nil
}

// Ingest creates an active snapshot with nothing mounted: Root and UpperDir are the
// same empty directory, to be filled in overlay form (for example by extracting a
// pulled layer) and then committed.
func (s *Snapshotter) Ingest(ctx context.Context) (*Active, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir, err := s.newActiveDir()
	if err != nil {
		return nil, err
	}
	upper := filepath.Join(dir, "upper")
	if err := os.Mkdir(upper, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("creating ingest snapshot: %w", err)
	}
	if err := chmodRoot(upper); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("creating ingest snapshot: %w", err)
	}
	return &Active{s: s, dir: dir, upper: upper, root: upper}, nil
}

// View mounts parents (committed ids, base first) read-only and returns the mount
// point and a function that unmounts and removes it. With no parents the root is an
// empty directory. A single parent is still mounted as an overlay (above an empty
// lower dir) so that its whiteouts and opaque markers are interpreted, not shown.
func (s *Snapshotter) View(ctx context.Context, parents []string) (root string, release func() error, err error) {
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	lower, err := s.lowerDirs(parents)
	if err != nil {
		return "", nil, err
	}
	dir, err := s.newActiveDir()
	if err != nil {
		return "", nil, err
	}
	root = filepath.Join(dir, "merged")
	if err := os.Mkdir(root, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("creating view: %w", err)
	}
	if len(lower) > 0 {
		// overlayfs needs two lower dirs when there is no upper dir.
		lower = append(lower, filepath.Join(s.root, emptyDir))
		if err := (overlay{lower: lower, target: root, readOnlyView: true}).mount(); err != nil {
			os.RemoveAll(dir)
			return "", nil, fmt.Errorf("creating view: %w", err)
		}
	}
	var once sync.Once
	var relErr error
	release = func() error {
		once.Do(func() {
			if err := unmount(root); err != nil {
				relErr = fmt.Errorf("releasing view: %w", err)
				return
			}
			if err := os.RemoveAll(dir); err != nil {
				relErr = fmt.Errorf("releasing view: %w", err)
			}
		})
		return relErr
	}
	return root, release, nil
}

// CleanStale removes active snapshots and views left behind by processes that no
// longer run, unmounting whatever is still mounted inside them first. Dirs of live
// processes (this one included) are left alone.
func (s *Snapshotter) CleanStale(ctx context.Context) error {
	base := filepath.Join(s.root, activeDir)
	stale, err := proc.Stale(base)
	if err != nil {
		return fmt.Errorf("cleaning stale snapshots: %w", err)
	}
	if len(stale) == 0 {
		return nil
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(base))
	if err != nil {
		return fmt.Errorf("cleaning stale snapshots: reading mounts: %w", err)
	}
	// Deepest first, so a sandbox's mounts inside an overlay go before the overlay.
	slices.SortFunc(mounts, func(a, b *mountinfo.Info) int { return len(b.Mountpoint) - len(a.Mountpoint) })
	var errs []error
	for _, dir := range stale {
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, m := range mounts {
			if m.Mountpoint == dir || strings.HasPrefix(m.Mountpoint, dir+"/") {
				if err := unmount(m.Mountpoint); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleaning stale snapshots: %w", err)
	}
	return nil
}

// lowerDirs returns the dirs of parents, top first.
func (s *Snapshotter) lowerDirs(parents []string) ([]string, error) {
	lower := make([]string, 0, len(parents)+2)
	for i := len(parents) - 1; i >= 0; i-- {
		id := parents[i]
		if err := validID(id); err != nil {
			return nil, err
		}
		if !s.Exists(id) {
			return nil, fmt.Errorf("looking up parent snapshot %s: %w", id, fs.ErrNotExist)
		}
		lower = append(lower, s.Dir(id))
	}
	return lower, nil
}

// Remove deletes committed snapshot id (a no-op when it does not exist). It is first
// renamed into an active dir of this process, so it vanishes from the snapshotter at
// once and, if the process dies half-way, the next CleanStale finishes the removal.
// The caller makes sure nothing uses it (no image, cache record or running build).
func (s *Snapshotter) Remove(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return err
	}
	if !s.Exists(id) {
		return nil
	}
	tmp, err := s.newActiveDir()
	if err != nil {
		return fmt.Errorf("removing snapshot %s: %w", id, err)
	}
	if err := os.Rename(s.Dir(id), filepath.Join(tmp, id)); err != nil {
		os.Remove(tmp)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("removing snapshot %s: %w", id, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("removing snapshot %s: %w", id, err)
	}
	return ctx.Err()
}

// newActiveDir creates a "<pid>-<random>" dir under active/.
func (s *Snapshotter) newActiveDir() (string, error) {
	dir, err := os.MkdirTemp(filepath.Join(s.root, activeDir), strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", fmt.Errorf("creating active snapshot dir: %w", err)
	}
	return dir, nil
}

// initLayer returns the init layer dir, creating it on first use. It is built in a
// private dir and renamed into place, so concurrent processes never see it partial.
func (s *Snapshotter) initLayer() (string, error) {
	s.initMu.Lock()
	defer s.initMu.Unlock()
	path := filepath.Join(s.root, initDir)
	if s.initReady {
		return path, nil
	}
	if _, err := os.Lstat(path); err == nil {
		s.initReady = true
		return path, nil
	}
	tmp, err := s.newActiveDir()
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	build := filepath.Join(tmp, initDir)
	if err := writeInitLayer(build); err != nil {
		return "", fmt.Errorf("creating init layer: %w", err)
	}
	err = unix.Renameat2(unix.AT_FDCWD, build, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return "", fmt.Errorf("creating init layer: %w", err)
	}
	s.initReady = true
	return path, nil
}

// writeInitLayer fills dir with the init layer. Modes match a Debian root filesystem
// and times are fixed, because these entries' attributes show through in the merged
// view (and are copied up if a step writes below them).
func writeInitLayer(dir string) error {
	entries := []struct {
		path string
		mode fs.FileMode
	}{
		{".", 0o755 | fs.ModeDir},
		{"dev", 0o755 | fs.ModeDir},
		{"dev/pts", 0o755 | fs.ModeDir},
		{"dev/shm", 0o777 | fs.ModeSticky | fs.ModeDir},
		{"proc", 0o555 | fs.ModeDir},
		{"sys", 0o555 | fs.ModeDir},
		{"etc", 0o755 | fs.ModeDir},
		{"etc/resolv.conf", 0o644},
		{"etc/hosts", 0o644},
		{"etc/hostname", 0o644},
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.path)
		if e.mode.IsDir() {
			if err := os.Mkdir(p, 0o700); err != nil {
				return err
			}
		} else if err := os.WriteFile(p, nil, 0o600); err != nil {
			return err
		}
		// Chmod after creation: the umask must not decide the modes.
		if err := os.Chmod(p, e.mode&(fs.ModePerm|fs.ModeSticky)); err != nil {
			return err
		}
	}
	epoch := time.Unix(0, 0)
	for i := len(entries) - 1; i >= 0; i-- {
		if err := os.Chtimes(filepath.Join(dir, entries[i].path), epoch, epoch); err != nil {
			return err
		}
	}
	return nil
}

// chmodRoot gives an upper dir the mode of a root directory whatever the umask: it
// becomes the "/" of the merged view (and of the committed layer).
func chmodRoot(upper string) error { return os.Chmod(upper, 0o755) }

// validID rejects ids that are not a single path element.
func validID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("invalid snapshot id %q", id)
	}
	return nil
}
