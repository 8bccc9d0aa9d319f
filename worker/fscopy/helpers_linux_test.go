package fscopy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// node describes one entry of a test tree. Paths are relative to the tree's root.
type node struct {
	path string
	kind byte // 'f', 'd', 'l', 'p' (fifo), 'c' (char device 1:3)
	mode uint32
	data string // file content or symlink target
	uid  int
	gid  int
	own  bool // chown to uid:gid (root only)
}

func file(p string, mode uint32, data string) node {
	return node{path: p, kind: 'f', mode: mode, data: data}
}
func dir(p string, mode uint32) node  { return node{path: p, kind: 'd', mode: mode} }
func link(p, target string) node      { return node{path: p, kind: 'l', data: target} }
func owned(n node, uid, gid int) node { n.uid, n.gid, n.own = uid, gid, true; return n }

// build creates nodes under root, parents first (missing parents 0755), with exact modes.
func build(t testing.TB, root string, nodes ...node) {
	t.Helper()
	for _, n := range nodes {
		p := filepath.Join(root, n.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch n.kind {
		case 'f':
			err = os.WriteFile(p, []byte(n.data), 0o600)
		case 'd':
			err = os.Mkdir(p, 0o700)
			if os.IsExist(err) {
				err = nil
			}
		case 'l':
			err = os.Symlink(n.data, p)
		case 'p':
			err = unix.Mkfifo(p, 0o600)
		case 'c':
			err = unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3)))
		}
		if err != nil {
			t.Fatal(err)
		}
		if n.own {
			if err := os.Lchown(p, n.uid, n.gid); err != nil {
				t.Fatal(err)
			}
		}
		if n.kind != 'l' {
			if err := unix.Fchmodat(unix.AT_FDCWD, p, n.mode, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// describe lists every entry under root as "kind mode uid:gid detail", keyed by path.
func describe(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		st := fi.Sys().(*syscall.Stat_t)
		own := fmt.Sprintf("%d:%d", st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("f %04o %s %s", st.Mode&0o7777, own, b)
		case fi.IsDir():
			out[rel] = fmt.Sprintf("d %04o %s", st.Mode&0o7777, own)
		case fi.Mode()&os.ModeSymlink != 0:
			tgt, _ := os.Readlink(p)
			out[rel] = fmt.Sprintf("l %s -> %s", own, tgt)
		default:
			kind := map[uint32]string{unix.S_IFIFO: "p", unix.S_IFCHR: "c", unix.S_IFBLK: "b", unix.S_IFSOCK: "s"}[st.Mode&unix.S_IFMT]
			out[rel] = fmt.Sprintf("%s %04o %s %d", kind, st.Mode&0o7777, own, st.Rdev)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// setMtime sets p's atime and mtime (not following symlinks).
func setMtime(t testing.TB, p string, tm time.Time) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(tm.UnixNano()), unix.NsecToTimespec(tm.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
}

func mtime(t testing.TB, p string) time.Time {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}

func ptr[T any](v T) *T { return &v }

func hostAbsent(t testing.TB, p string) {
	t.Helper()
	if _, err := os.Lstat(p); err == nil {
		os.Remove(p)
		t.Errorf("%s was written on the host", p)
	} else if !os.IsNotExist(err) && !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("lstat %s: %v", p, err)
	}
}
