//go:build linux

package runc

import (
	"bufio"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/builderdev/builder/cache/snapshot"
	"github.com/builderdev/builder/worker"
)

// upperEntries lists what a run wrote into an active snapshot's upper dir, as
// slash paths with a "/" suffix for directories and "@" for anything but a regular
// file or directory.
func upperEntries(t *testing.T, a *snapshot.Active) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(a.UpperDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(a.UpperDir(), p)
		if err != nil || rel == "." {
			return err
		}
		switch {
		case d.IsDir():
			rel += "/"
		case !d.Type().IsRegular():
			rel += "@"
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// writeFiles creates a directory holding the given files.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// assertOnlyOverlayMounted checks that no sandbox mount is visible on the host.
func assertOnlyOverlayMounted(t *testing.T, root string) {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(root))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Mountpoint != root {
			t.Errorf("mounted on the host after Run: %s (%s)", m.Mountpoint, m.FSType)
		}
	}
}

func TestMountBind(t *testing.T) {
	e := newEnv(t)
	const roErr = "Read-only file system"
	tests := []struct {
		name      string
		files     map[string]string // in the bind source dir
		file      bool              // bind the source's file "f" rather than the dir
		target    string
		readOnly  bool
		script    string
		want      string            // stdout
		wantHost  map[string]string // files in the source dir afterwards
		wantUpper []string
	}{
		{
			name:     "read-only dir",
			files:    map[string]string{"hello": "hi\n"},
			target:   "/mnt/ro",
			readOnly: true,
			script:   "cat /mnt/ro/hello; touch /mnt/ro/x 2>&1; mkdir /mnt/ro/d 2>&1; true",
			want:     "hi\ntouch: /mnt/ro/x: " + roErr + "\nmkdir: can't create directory '/mnt/ro/d': " + roErr + "\n",
			wantHost: map[string]string{"hello": "hi\n"},
			// The target and its parent were missing: created as directories.
			wantUpper: []string{"mnt/", "mnt/ro/"},
		},
		{
			name:      "read-write dir",
			files:     map[string]string{"hello": "hi\n"},
			target:    "/tmp",
			script:    "echo written >/tmp/out && cat /tmp/hello",
			want:      "hi\n",
			wantHost:  map[string]string{"hello": "hi\n", "out": "written\n"},
			wantUpper: nil, // /tmp exists in the image
		},
		{
			name:      "read-write file",
			files:     map[string]string{"f": "one\n"},
			file:      true,
			target:    "/etc/app/conf",
			script:    "cat /etc/app/conf && echo two >>/etc/app/conf",
			want:      "one\n",
			wantHost:  map[string]string{"f": "one\ntwo\n"},
			wantUpper: []string{"etc/", "etc/app/", "etc/app/conf"},
		},
		{
			name:      "read-only file",
			files:     map[string]string{"f": "one\n"},
			file:      true,
			target:    "/conf",
			readOnly:  true,
			script:    "cat /conf; echo two 2>&1 >>/conf; true",
			want:      "one\nsh: can't create /conf: " + roErr + "\n",
			wantHost:  map[string]string{"f": "one\n"},
			wantUpper: []string{"conf"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := writeFiles(t, tc.files)
			source := src
			if tc.file {
				source = filepath.Join(src, "f")
			}
			a := e.prepare(t)
			got, err := e.run(t, worker.ExecSpec{
				Rootfs: a.Root(),
				Args:   []string{"sh", "-c", tc.script},
				Mounts: []worker.Mount{{Type: worker.MountBind, Source: source, Target: tc.target, ReadOnly: tc.readOnly}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			host := map[string]string{}
			entries, err := os.ReadDir(src)
			if err != nil {
				t.Fatal(err)
			}
			for _, ent := range entries {
				b, err := os.ReadFile(filepath.Join(src, ent.Name()))
				if err != nil {
					t.Fatal(err)
				}
				host[ent.Name()] = string(b)
			}
			if diff := cmp.Diff(tc.wantHost, host); diff != "" {
				t.Errorf("bind source (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantUpper, upperEntries(t, a)); diff != "" {
				t.Errorf("upper dir (-want +got):\n%s", diff)
			}
			if fi, err := os.Stat(filepath.Join(a.UpperDir(), tc.target)); err == nil && fi.Mode().IsRegular() && fi.Size() != 0 {
				t.Errorf("file mount point has %d bytes, want an empty stub", fi.Size())
			}
			assertOnlyOverlayMounted(t, a.Root())
		})
	}
}

// TestMountReadOnlyRecursive checks that a read-only bind is read-only all the way
// down, also in mounts below its source.
func TestMountReadOnlyRecursive(t *testing.T) {
	e := newEnv(t)
	src := writeFiles(t, map[string]string{"sub/.keep": ""})
	sub := filepath.Join(src, "sub")
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(sub, unix.MNT_DETACH); err != nil {
			t.Error(err)
		}
	})
	if err := os.WriteFile(filepath.Join(sub, "in-submount"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := e.run(t, worker.ExecSpec{
		Args:   []string{"sh", "-c", "cat /src/sub/in-submount; echo; touch /src/sub/new 2>&1; true"},
		Mounts: []worker.Mount{{Type: worker.MountBind, Source: src, Target: "/src", ReadOnly: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "x\ntouch: /src/sub/new: Read-only file system\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	// The host's own mount stays writable.
	if err := os.WriteFile(filepath.Join(sub, "host"), nil, 0o644); err != nil {
		t.Errorf("host submount made read-only: %v", err)
	}
}

// TestMountSocket binds a unix socket and talks to it from the sandbox: glibc's
// syslog (busybox logger) connects to /dev/log, falling back to a stream socket.
func TestMountSocket(t *testing.T) {
	e := newEnv(t)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	received := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			received <- err.Error()
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, _ := bufio.NewReader(c).ReadString(0)
		received <- line
	}()

	a := e.prepare(t)
	got, err := e.run(t, worker.ExecSpec{
		Rootfs: a.Root(),
		Args:   []string{"sh", "-c", "test -S /run/ssh/agent.sock && test -S /dev/log && logger -t builder hello-from-sandbox && echo ok"},
		Mounts: []worker.Mount{
			{Type: worker.MountBind, Source: sock, Target: "/run/ssh/agent.sock"},
			{Type: worker.MountBind, Source: sock, Target: "/dev/log"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != "ok\n" {
		t.Errorf("stdout = %q, want ok", got)
	}
	select {
	case msg := <-received:
		if !strings.Contains(msg, "hello-from-sandbox") {
			t.Errorf("socket received %q, want the logged message", msg)
		}
	case <-time.After(10 * time.Second):
		t.Error("nothing received on the socket")
	}
	// The socket's mount point is an empty regular file; /dev/log lived in the
	// sandbox's /dev tmpfs.
	if diff := cmp.Diff([]string{"run/", "run/ssh/", "run/ssh/agent.sock"}, upperEntries(t, a)); diff != "" {
		t.Errorf("upper dir (-want +got):\n%s", diff)
	}
	if fi, err := os.Lstat(filepath.Join(a.UpperDir(), "run/ssh/agent.sock")); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
		t.Errorf("socket mount point = %v, %v; want an empty regular file", fi, err)
	}
}

func TestMountTmpfs(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name      string
		mount     worker.Mount
		user      string
		script    string
		want      string
		wantUpper []string
	}{
		{
			name:   "size limit",
			mount:  worker.Mount{Type: worker.MountTmpfs, Target: "/scratch", Size: 1 << 20},
			script: "stat -f -c %T /scratch; df -k /scratch | tail -n 1 | awk '{print $2}'; dd if=/dev/zero of=/scratch/f bs=1024 count=2048 2>/dev/null || echo full",
			want:   "tmpfs\n1024\nfull\n",
			// The missing target is created; nothing written below it reaches the layer.
			wantUpper: []string{"scratch/"},
		},
		{
			name:      "new target is 1777",
			mount:     worker.Mount{Type: worker.MountTmpfs, Target: "/var/cache/x"},
			user:      "builder",
			script:    "stat -c %a /var/cache/x && touch /var/cache/x/f && echo ok",
			want:      "1777\nok\n",
			wantUpper: []string{"var/", "var/cache/", "var/cache/x/"},
		},
		{
			name:      "read-only",
			mount:     worker.Mount{Type: worker.MountTmpfs, Target: "/ro", ReadOnly: true},
			script:    "stat -f -c %T /ro; touch /ro/f 2>&1; true",
			want:      "tmpfs\ntouch: /ro/f: Read-only file system\n",
			wantUpper: []string{"ro/"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := e.prepare(t)
			got, err := e.run(t, worker.ExecSpec{
				Rootfs: a.Root(),
				Args:   []string{"/bin/sh", "-c", tc.script},
				User:   tc.user,
				Mounts: []worker.Mount{tc.mount},
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantUpper, upperEntries(t, a)); diff != "" {
				t.Errorf("upper dir (-want +got):\n%s", diff)
			}
			assertOnlyOverlayMounted(t, a.Root())
		})
	}
}

// TestMountTmpfsKeepsTargetMode checks that a tmpfs over an existing directory
// takes that directory's mode, as BuildKit's does.
func TestMountTmpfsKeepsTargetMode(t *testing.T) {
	e := newEnv(t)
	a := e.prepare(t)
	if err := os.Mkdir(filepath.Join(a.Root(), "private"), 0o700); err != nil {
		t.Fatal(err)
	}
	got, err := e.run(t, worker.ExecSpec{
		Rootfs: a.Root(),
		Args:   []string{"sh", "-c", "stat -c %a /private; stat -f -c %T /private"},
		Mounts: []worker.Mount{{Type: worker.MountTmpfs, Target: "/private"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != "700\ntmpfs\n" {
		t.Errorf("stdout = %q, want 700 and tmpfs", got)
	}
}

func TestMountNested(t *testing.T) {
	e := newEnv(t)
	src := writeFiles(t, map[string]string{"a": "A\n"})
	cache := writeFiles(t, map[string]string{"c": "C\n"})
	a := e.prepare(t)
	got, err := e.run(t, worker.ExecSpec{
		Rootfs: a.Root(),
		Args: []string{"sh", "-c", strings.Join([]string{
			"stat -f -c %T /work/tmp",
			"echo t >/work/tmp/t",
			"cat /work/a /work/tmp/t /scratch/cache/c",
			"echo w >/scratch/cache/w",
			"touch /scratch/cache/ro/x 2>&1 || true",
		}, "; ")},
		Mounts: []worker.Mount{
			{Type: worker.MountBind, Source: src, Target: "/work"},
			{Type: worker.MountTmpfs, Target: "/work/tmp"},
			{Type: worker.MountTmpfs, Target: "/scratch"},
			{Type: worker.MountBind, Source: cache, Target: "/scratch/cache"},
			{Type: worker.MountBind, Source: src, Target: "/scratch/cache/ro", ReadOnly: true},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "tmpfs\nA\nt\nC\ntouch: /scratch/cache/ro/x: Read-only file system\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
	// A target inside a bind mount is created in its source (the caller removes
	// it); what was written to the tmpfs is gone.
	if entries, err := os.ReadDir(filepath.Join(src, "tmp")); err != nil || len(entries) != 0 {
		t.Errorf("nested tmpfs target in the bind source: %v, %v; want an empty directory", entries, err)
	}
	if b, err := os.ReadFile(filepath.Join(cache, "w")); err != nil || string(b) != "w\n" {
		t.Errorf("write through the nested bind: %q, %v", b, err)
	}
	// /scratch/cache was created in the tmpfs, so only /work and /scratch reach the layer.
	if diff := cmp.Diff([]string{"scratch/", "work/"}, upperEntries(t, a)); diff != "" {
		t.Errorf("upper dir (-want +got):\n%s", diff)
	}
	assertOnlyOverlayMounted(t, a.Root())
}

// TestMountSymlinkStaysInRootfs checks that an image's symlinks resolve inside
// the rootfs for mount targets, however they are written.
func TestMountSymlinkStaysInRootfs(t *testing.T) {
	e := newEnv(t)
	outside := t.TempDir()
	src := writeFiles(t, map[string]string{"from-src": "S\n"})
	tests := []struct {
		name   string
		link   string // the rootfs's /escape points here
		target string
	}{
		{name: "absolute", link: outside, target: "/escape/sub"},
		{name: "dot-dot", link: "/../../../../../../.." + outside, target: "/escape/sub"},
		{name: "relative dot-dot", link: "../../../../../../../.." + outside, target: "/escape/sub"},
		{name: "last component", link: "../../../../../../../.." + outside + "/last", target: "/escape"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := e.prepare(t)
			if err := os.Symlink(tc.link, filepath.Join(a.Root(), "escape")); err != nil {
				t.Fatal(err)
			}
			got, err := e.run(t, worker.ExecSpec{
				Rootfs: a.Root(),
				Args:   []string{"sh", "-c", "cat " + tc.target + "/from-src"},
				Mounts: []worker.Mount{{Type: worker.MountBind, Source: src, Target: tc.target}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if got != "S\n" {
				t.Errorf("stdout = %q, want the bind source's file", got)
			}
			if entries, err := os.ReadDir(outside); err != nil || len(entries) != 0 {
				t.Errorf("created outside the rootfs: %v, %v", entries, err)
			}
			// The mount point was created where the symlink resolves inside the rootfs.
			resolved := filepath.Join(a.UpperDir(), outside, strings.TrimPrefix(tc.target, "/escape"))
			if tc.name == "last component" {
				resolved = filepath.Join(a.UpperDir(), outside, "last")
			}
			if fi, err := os.Stat(resolved); err != nil || !fi.IsDir() {
				t.Errorf("mount point %s in the rootfs: %v", resolved, err)
			}
		})
	}
}

func TestMountInvalid(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	tests := []struct {
		name  string
		mount worker.Mount
		want  string
	}{
		{name: "relative target", mount: worker.Mount{Type: worker.MountTmpfs, Target: "tmp/x"}, want: "not absolute"},
		{name: "empty target", mount: worker.Mount{Type: worker.MountTmpfs}, want: "not absolute"},
		{name: "root target", mount: worker.Mount{Type: worker.MountBind, Source: dir, Target: "/x/.."}, want: "root"},
		{name: "unknown type", mount: worker.Mount{Type: "overlay", Target: "/x"}, want: `"overlay"`},
		{name: "relative source", mount: worker.Mount{Type: worker.MountBind, Source: "src", Target: "/x"}, want: "not absolute"},
		{name: "missing source", mount: worker.Mount{Type: worker.MountBind, Source: filepath.Join(dir, "nope"), Target: "/x"}, want: "no such file"},
		{name: "negative size", mount: worker.Mount{Type: worker.MountTmpfs, Target: "/x", Size: -1}, want: "negative"},
		// A directory over an existing file: libcontainer refuses.
		{name: "dir over file", mount: worker.Mount{Type: worker.MountBind, Source: dir, Target: "/bin/busybox"}, want: "busybox"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := e.prepare(t)
			_, err := e.run(t, worker.ExecSpec{Rootfs: a.Root(), Args: []string{"true"}, Mounts: []worker.Mount{tc.mount}})
			if err == nil || errors.As(err, new(*worker.ExitError)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want an error containing %s", err, tc.want)
			}
			if entries := upperEntries(t, a); len(entries) != 0 {
				t.Errorf("upper dir after a rejected mount: %v", entries)
			}
			assertOnlyOverlayMounted(t, a.Root())
		})
	}
	entries, _ := os.ReadDir(e.exec.stateDir)
	if len(entries) != 0 {
		t.Errorf("state dir not empty after failed runs: %v", entries)
	}
}
