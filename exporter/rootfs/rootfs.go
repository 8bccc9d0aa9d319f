//go:build linux

package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/builderdev/builder/cache/content"
)

// Options configures WriteTar and WriteDir.
type Options struct {
	// Epoch, when set, replaces every modification time.
	Epoch *time.Time
}

func (o Options) mtime(st *unix.Stat_t) time.Time {
	if o.Epoch != nil {
		return *o.Epoch
	}
	return time.Unix(st.Mtim.Sec, st.Mtim.Nsec)
}

// entry is one file of the source tree.
type entry struct {
	rel string // slash-separated, relative to the root, never ""
	abs string
	st  unix.Stat_t
}

// walk calls fn for every entry below root in lexical order, parents first.
func walk(ctx context.Context, root string, fn func(e *entry) error) error {
	return filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		e := &entry{rel: filepath.ToSlash(rel), abs: p}
		if err := unix.Lstat(p, &e.st); err != nil {
			return fmt.Errorf("stating %s: %w", p, err)
		}
		return fn(e)
	})
}

type inode struct{ dev, ino uint64 }

// WriteTar writes the tree at src to w as a tar. Times are whole seconds.
func WriteTar(ctx context.Context, src string, w io.Writer, opts Options) error {
	tw := tar.NewWriter(w)
	links := map[inode]string{}
	buf := make([]byte, 256<<10)
	err := walk(ctx, src, func(e *entry) error {
		hdr := &tar.Header{
			Name:    e.rel,
			Mode:    int64(e.st.Mode & 0o7777),
			Uid:     int(e.st.Uid),
			Gid:     int(e.st.Gid),
			ModTime: opts.mtime(&e.st).Truncate(time.Second),
			Format:  tar.FormatPAX,
		}
		typ := e.st.Mode & unix.S_IFMT
		if typ != unix.S_IFDIR && e.st.Nlink > 1 {
			id := inode{uint64(e.st.Dev), e.st.Ino}
			if first, ok := links[id]; ok {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				return tw.WriteHeader(hdr)
			}
			links[id] = e.rel
		}
		switch typ {
		case unix.S_IFDIR:
			hdr.Typeflag, hdr.Name = tar.TypeDir, e.rel+"/"
		case unix.S_IFREG:
			hdr.Typeflag, hdr.Size = tar.TypeReg, e.st.Size
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			return copyInto(ctx, tw, e, buf)
		case unix.S_IFLNK:
			target, err := os.Readlink(e.abs)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
		case unix.S_IFCHR, unix.S_IFBLK:
			hdr.Typeflag = tar.TypeChar
			if typ == unix.S_IFBLK {
				hdr.Typeflag = tar.TypeBlock
			}
			hdr.Devmajor = int64(unix.Major(e.st.Rdev))
			hdr.Devminor = int64(unix.Minor(e.st.Rdev))
		case unix.S_IFIFO:
			hdr.Typeflag = tar.TypeFifo
		default:
			return nil // sockets are runtime state
		}
		return tw.WriteHeader(hdr)
	})
	if err != nil {
		return fmt.Errorf("writing filesystem tar: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing filesystem tar: %w", err)
	}
	return nil
}

// copyInto copies e's content to w, checking that its size did not change.
func copyInto(ctx context.Context, w io.Writer, e *entry, buf []byte) error {
	f, err := os.OpenFile(e.abs, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.CopyBuffer(w, content.ContextReader(ctx, f), buf)
	if err != nil {
		return fmt.Errorf("copying %s: %w", e.rel, err)
	}
	if n != e.st.Size {
		return fmt.Errorf("copying %s: file changed while copying: read %d bytes, expected %d", e.rel, n, e.st.Size)
	}
	return nil
}

// WriteDir writes the tree at src into dest. A dest that does not exist yet is built
// under a temporary name beside it and renamed into place at the end, so a failed
// export leaves nothing. An existing directory is written into: files of the tree
// replace what is there at their path, other files stay. Every path is resolved
// inside dest (github.com/cyphar/filepath-securejoin): symlinks already in dest cannot
// lead a write outside it.
func WriteDir(ctx context.Context, src, dest string, opts Options) (err error) {
	fi, err := os.Lstat(dest)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("writing filesystem to %s: destination exists and is not a directory", dest)
	case err == nil:
		if err := copyTree(ctx, src, dest, opts); err != nil {
			return fmt.Errorf("writing filesystem to %s: %w", dest, err)
		}
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("writing filesystem to %s: %w", dest, err)
	}
	parent, base := filepath.Split(filepath.Clean(dest))
	if parent == "" {
		parent = "."
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing filesystem to %s: %w", dest, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := copyTree(ctx, src, tmp, opts); err != nil {
		return fmt.Errorf("writing filesystem to %s: %w", dest, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(src, &st); err != nil {
		return err
	}
	if err := os.Chmod(tmp, os.FileMode(st.Mode&0o777)); err != nil {
		return err
	}
	if err := os.Rename(tmp, dest); err != nil {
		return fmt.Errorf("writing filesystem to %s: %w", dest, err)
	}
	return nil
}

// copyTree copies src's entries into the existing directory root.
func copyTree(ctx context.Context, src, root string, opts Options) error {
	asRoot := os.Geteuid() == 0
	links := map[inode]string{}
	type dirTime struct {
		path string
		t    time.Time
	}
	var dirs []dirTime
	buf := make([]byte, 256<<10)
	err := walk(ctx, src, func(e *entry) error {
		parent, err := securejoin.SecureJoin(root, path.Dir(e.rel))
		if err != nil {
			return err
		}
		target := filepath.Join(parent, path.Base(e.rel))
		typ := e.st.Mode & unix.S_IFMT
		if fi, err := os.Lstat(target); err == nil {
			if !(fi.IsDir() && typ == unix.S_IFDIR) {
				if err := os.RemoveAll(target); err != nil {
					return err
				}
			}
		} else if errors.Is(err, os.ErrNotExist) {
			// The parent is created when walking it, unless it was not a directory
			// in dest; securejoin then resolved it to a path that must be made.
			if err := os.MkdirAll(parent, 0o755); err != nil {
				return err
			}
		} else {
			return err
		}
		if typ != unix.S_IFDIR && e.st.Nlink > 1 {
			id := inode{uint64(e.st.Dev), e.st.Ino}
			if first, ok := links[id]; ok {
				return os.Link(first, target)
			}
			links[id] = target
		}
		switch typ {
		case unix.S_IFDIR:
			if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
		case unix.S_IFREG:
			if err := writeFile(ctx, e, target, buf); err != nil {
				return err
			}
		case unix.S_IFLNK:
			link, err := os.Readlink(e.abs)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
			if typ != unix.S_IFIFO && !asRoot {
				return nil // only root may make device nodes
			}
			if err := unix.Mknod(target, e.st.Mode, int(e.st.Rdev)); err != nil {
				return fmt.Errorf("creating %s: %w", e.rel, err)
			}
		default:
			return nil
		}
		if asRoot {
			if err := os.Lchown(target, int(e.st.Uid), int(e.st.Gid)); err != nil {
				return err
			}
		}
		if typ != unix.S_IFLNK {
			// After chown, which clears set-id bits.
			if err := unix.Chmod(target, e.st.Mode&0o7777); err != nil {
				return fmt.Errorf("setting mode of %s: %w", e.rel, err)
			}
		}
		if typ == unix.S_IFDIR {
			// Writing the children changes it; its time is set last.
			dirs = append(dirs, dirTime{target, opts.mtime(&e.st)})
			return nil
		}
		return setTime(target, opts.mtime(&e.st))
	})
	if err != nil {
		return err
	}
	for _, d := range slices.Backward(dirs) {
		if err := setTime(d.path, d.t); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(ctx context.Context, e *entry, target string, buf []byte) error {
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if err := copyInto(ctx, f, e, buf); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func setTime(p string, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting times of %s: %w", p, err)
	}
	return nil
}
