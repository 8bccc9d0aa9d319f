package diff

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/pgzip"
	"golang.org/x/sys/unix"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
)

// tarEntry is the part of a tar header the tests compare.
type tarEntry struct {
	Name     string
	Type     byte
	Mode     int64
	Uid, Gid int
	Linkname string
	Size     int64
	Dev      string
	Xattrs   map[string]string
}

// readBlob returns the entries of the gzip layer blob l, checking digest, size and DiffID.
func readBlob(t testing.TB, cs *content.Store, l cache.Layer) []tarEntry {
	t.Helper()
	dt, err := cs.ReadAll(context.Background(), l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(dt)) != l.Size {
		t.Errorf("blob size = %d, layer says %d", len(dt), l.Size)
	}
	zr, err := pgzip.NewReader(bytes.NewReader(dt))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("sha256:%x", sha256.Sum256(raw)); got != l.DiffID.String() {
		t.Errorf("uncompressed digest = %s, layer DiffID = %s", got, l.DiffID)
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	var out []tarEntry
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Uname != "" || hdr.Gname != "" {
			t.Errorf("%s: uname/gname = %q/%q, want empty", hdr.Name, hdr.Uname, hdr.Gname)
		}
		e := tarEntry{Name: hdr.Name, Type: hdr.Typeflag, Mode: hdr.Mode, Uid: hdr.Uid, Gid: hdr.Gid, Linkname: hdr.Linkname, Size: hdr.Size}
		if hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock {
			e.Dev = fmt.Sprintf("%d:%d", hdr.Devmajor, hdr.Devminor)
		}
		for k, v := range hdr.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if e.Xattrs == nil {
					e.Xattrs = map[string]string{}
				}
				e.Xattrs[name] = v
			}
		}
		out = append(out, e)
	}
	return out
}

// fileInfo is what the tests compare between a source tree and its extracted copy.
type fileInfo struct {
	Type     string
	Mode     uint32
	Uid, Gid uint32
	Size     int64
	Rdev     string
	Target   string
	Content  string
	Mtime    int64
	LinkedTo string // first path (walk order) sharing the inode, for hardlinks
	Xattrs   map[string]string
}

// scanTree describes every path below root (not root itself).
func scanTree(t testing.TB, root string) map[string]fileInfo {
	t.Helper()
	out := map[string]fileInfo{}
	inodes := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fi := fileInfo{Mode: st.Mode & 0o7777, Uid: st.Uid, Gid: st.Gid, Mtime: st.Mtim.Sec}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			fi.Type = "dir"
		case unix.S_IFREG:
			fi.Type = "file"
			fi.Size = st.Size
			dt, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(dt)
			fi.Content = hex.EncodeToString(sum[:8])
		case unix.S_IFLNK:
			fi.Type = "symlink"
			fi.Target, _ = os.Readlink(p)
		case unix.S_IFCHR:
			fi.Type = "char"
		case unix.S_IFBLK:
			fi.Type = "block"
		case unix.S_IFIFO:
			fi.Type = "fifo"
		default:
			fi.Type = "other"
		}
		if fi.Type == "char" || fi.Type == "block" {
			fi.Rdev = fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		if fi.Type == "char" && st.Rdev == 0 {
			fi.Mtime = 0 // a whiteout's own times carry no meaning
		}
		if fi.Type != "dir" && st.Nlink > 1 && !(fi.Type == "char" && st.Rdev == 0) {
			if first, ok := inodes[st.Ino]; ok {
				fi.LinkedTo = first
			} else {
				inodes[st.Ino] = rel
			}
		}
		xs, err := listXattrs(p)
		if err != nil {
			return err
		}
		for k, v := range xs {
			if strings.HasPrefix(k, "trusted.overlay.") && k != "trusted.overlay.opaque" {
				continue
			}
			if fi.Xattrs == nil {
				fi.Xattrs = map[string]string{}
			}
			fi.Xattrs[k] = v
		}
		out[rel] = fi
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// node is one path of a test tree.
type node struct {
	path     string
	kind     string // dir, file, symlink, hardlink, fifo, char, block, whiteout
	mode     uint32
	uid, gid int
	data     string // file content, symlink target, hardlink source
	dev      [2]uint32
	xattrs   map[string]string
}

// buildTree creates nodes below root (parents must come first) and sets every mtime to mtime.
func buildTree(t testing.TB, root string, nodes []node, mtime time.Time) {
	t.Helper()
	for _, n := range nodes {
		p := filepath.Join(root, n.path)
		var err error
		switch n.kind {
		case "dir":
			err = os.Mkdir(p, 0o700)
		case "file":
			err = os.WriteFile(p, []byte(n.data), 0o600)
		case "symlink":
			err = os.Symlink(n.data, p)
		case "hardlink":
			err = os.Link(filepath.Join(root, n.data), p)
		case "fifo":
			err = unix.Mkfifo(p, 0o600)
		case "char":
			err = unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(n.dev[0], n.dev[1])))
		case "block":
			err = unix.Mknod(p, unix.S_IFBLK|0o600, int(unix.Mkdev(n.dev[0], n.dev[1])))
		case "whiteout":
			err = unix.Mknod(p, unix.S_IFCHR, 0)
		default:
			t.Fatalf("unknown kind %q", n.kind)
		}
		if err != nil {
			t.Fatal(err)
		}
		if n.kind == "hardlink" || n.kind == "whiteout" {
			continue
		}
		if err := os.Lchown(p, n.uid, n.gid); err != nil {
			t.Fatal(err)
		}
		for k, v := range n.xattrs {
			if err := unix.Lsetxattr(p, k, []byte(v), 0); err != nil {
				t.Fatalf("setxattr %s on %s: %v", k, p, err)
			}
		}
		if n.kind != "symlink" {
			if err := unix.Chmod(p, n.mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	setAllTimes(t, root, mtime)
}

func setAllTimes(t testing.TB, root string, mtime time.Time) {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Deepest first, so that setting a child's times does not disturb its parent's.
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))
	ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	for _, p := range paths {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
}

// tarFile is one entry for makeTar.
type tarFile struct {
	hdr  tar.Header
	data string
}

func makeTar(t testing.TB, files ...tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := f.hdr
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
