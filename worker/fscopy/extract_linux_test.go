package fscopy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/builderdev/builder/internal/testutil"
)

// tarEntry is one entry of a test archive.
type tarEntry struct {
	hdr  tar.Header
	data string
}

var sampleTime = time.Unix(1700000000, 0)

// sampleEntries are the entries of testdata/sample.tar.bz2 (made with bzip2(1), since
// Go has no bzip2 writer).
var sampleEntries = []tarEntry{
	{hdr: tar.Header{Name: "pkg/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 1000, Gid: 1000, ModTime: sampleTime}},
	{hdr: tar.Header{Name: "pkg/hello.txt", Typeflag: tar.TypeReg, Mode: 0o640, Uid: 1000, Gid: 1000, ModTime: sampleTime}, data: "hello\n"},
	{hdr: tar.Header{Name: "pkg/link", Typeflag: tar.TypeSymlink, Linkname: "hello.txt", ModTime: sampleTime}},
	{hdr: tar.Header{Name: "pkg/hard", Typeflag: tar.TypeLink, Linkname: "pkg/hello.txt", ModTime: sampleTime}},
	{hdr: tar.Header{Name: ".wh.gone", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: sampleTime}},
}

func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.hdr
		h.Size = int64(len(e.data))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func compress(t testing.TB, kind string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	var err error
	switch kind {
	case "none":
		return data
	case "gzip":
		w = gzip.NewWriter(&b)
	case "xz":
		w, err = xz.NewWriter(&b)
	case "zstd":
		w, err = zstd.NewWriter(&b)
	case "bzip2":
		// Go has no bzip2 writer: only the sample archive exists in this form.
		if !bytes.Equal(data, makeTar(t, sampleEntries...)) {
			t.Fatal("bzip2 is only available for the sample archive")
		}
		dt, err := os.ReadFile("testdata/sample.tar.bz2")
		if err != nil {
			t.Fatal(err)
		}
		return dt
	default:
		t.Fatalf("unknown compression %s", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func writeBytes(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCopyAutoExtract(t *testing.T) {
	testutil.RequiresRoot(t) // archive owners
	sample := makeTar(t, sampleEntries...)
	sampleTree := map[string]string{
		"opt": "d 0755 0:0", "opt/x": "d 0755 0:0",
		"opt/x/pkg": "d 0750 1000:1000", "opt/x/pkg/hello.txt": "f 0640 1000:1000 hello\n",
		"opt/x/pkg/link": "l 0:0 -> hello.txt", "opt/x/pkg/hard": "f 0640 1000:1000 hello\n",
		"opt/x/.wh.gone": "f 0644 0:0 ",
	}
	gzText := compress(t, "gzip", []byte("not a tar"))
	tests := []struct {
		name  string
		files map[string][]byte // source files
		opt   CopyOptions
		want  map[string]string
	}{
		{name: "plain tar", files: map[string][]byte{"a.tar": sample}, opt: CopyOptions{Src: []string{"a.tar"}, Dest: "/opt/x"}, want: sampleTree},
		{name: "gzip", files: map[string][]byte{"a.tgz": compress(t, "gzip", sample)}, opt: CopyOptions{Src: []string{"a.tgz"}, Dest: "/opt/x"}, want: sampleTree},
		{name: "bzip2", files: map[string][]byte{"a.tbz": compress(t, "bzip2", sample)}, opt: CopyOptions{Src: []string{"a.tbz"}, Dest: "/opt/x/"}, want: sampleTree},
		{name: "xz", files: map[string][]byte{"a.txz": compress(t, "xz", sample)}, opt: CopyOptions{Src: []string{"a.txz"}, Dest: "/opt/x"}, want: sampleTree},
		{name: "zstd, named like no archive", files: map[string][]byte{"data.bin": compress(t, "zstd", sample)}, opt: CopyOptions{Src: []string{"data.bin"}, Dest: "/opt/x"}, want: sampleTree},
		{name: "compressed non-tar is copied as is", files: map[string][]byte{"notes.txt.gz": gzText}, opt: CopyOptions{Src: []string{"notes.txt.gz"}, Dest: "/opt/x"},
			want: map[string]string{"opt": "d 0755 0:0", "opt/x": "f 0644 0:0 " + string(gzText)}},
		{name: "plain file is copied", files: map[string][]byte{"a.txt": []byte("text")}, opt: CopyOptions{Src: []string{"a.txt"}, Dest: "/opt/x/"},
			want: map[string]string{"opt": "d 0755 0:0", "opt/x": "d 0755 0:0", "opt/x/a.txt": "f 0644 0:0 text"}},
		{name: "no AutoExtract copies the archive", files: map[string][]byte{"a.tar": sample}, opt: CopyOptions{Src: []string{"a.tar"}, Dest: "/opt/x"},
			want: map[string]string{"opt": "d 0755 0:0", "opt/x": "f 0644 0:0 " + string(sample)}},
		{name: "archive inside a copied directory stays an archive", files: map[string][]byte{"d/a.tar": sample}, opt: CopyOptions{Src: []string{"d"}, Dest: "/opt/x"},
			want: map[string]string{"opt": "d 0755 0:0", "opt/x": "d 0755 0:0", "opt/x/a.tar": "f 0644 0:0 " + string(sample)}},
		{name: "wildcard extracts each match", files: map[string][]byte{
			"1.tar": makeTar(t, tarEntry{hdr: tar.Header{Name: "one", Typeflag: tar.TypeReg, Mode: 0o600, ModTime: sampleTime}, data: "1"}),
			"2.tar": makeTar(t, tarEntry{hdr: tar.Header{Name: "two", Typeflag: tar.TypeReg, Mode: 0o600, ModTime: sampleTime}, data: "2"}),
		}, opt: CopyOptions{Src: []string{"*.tar"}, Dest: "/opt/x", AllowWildcard: true},
			want: map[string]string{"opt": "d 0755 0:0", "opt/x": "d 0755 0:0", "opt/x/one": "f 0600 0:0 1", "opt/x/two": "f 0600 0:0 2"}},
		{name: "chown and chmod override the archive", files: map[string][]byte{"a.tar": sample},
			opt: CopyOptions{Src: []string{"a.tar"}, Dest: "/opt/x", Chown: &Owner{User: "app"}, Mode: ptr(os.FileMode(0o755))},
			want: map[string]string{
				"opt": "d 0755 1234:1235", "opt/x": "d 0755 1234:1235",
				"opt/x/pkg": "d 0755 1234:1235", "opt/x/pkg/hello.txt": "f 0755 1234:1235 hello\n",
				"opt/x/pkg/link": "l 1234:1235 -> hello.txt", "opt/x/pkg/hard": "f 0755 1234:1235 hello\n",
				"opt/x/.wh.gone": "f 0755 1234:1235 ",
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src, dst := t.TempDir(), t.TempDir()
			for name, data := range tc.files {
				writeBytes(t, filepath.Join(src, name), data)
			}
			build(t, dst, userDB...)
			opt := tc.opt
			opt.AutoExtract = !strings.HasPrefix(tc.name, "no AutoExtract")
			if err := Copy(t.Context(), src, dst, opt); err != nil {
				t.Fatalf("Copy() = %v", err)
			}
			got := describe(t, dst)
			delete(got, "etc")
			delete(got, "etc/passwd")
			delete(got, "etc/group")
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("destination tree (-want +got):\n%s", diff)
			}
			if _, ok := tc.want["opt/x/pkg"]; ok {
				for _, p := range []string{"opt/x/pkg", "opt/x/pkg/hello.txt", "opt/x/pkg/link"} {
					if got := mtime(t, filepath.Join(dst, p)); !got.Equal(sampleTime) {
						t.Errorf("mtime of %s = %v, want %v", p, got, sampleTime)
					}
				}
			}
		})
	}
}

func TestExtractMalicious(t *testing.T) {
	testutil.RequiresRoot(t)
	reg := func(name, data string) tarEntry {
		return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, ModTime: sampleTime}, data: data}
	}
	sym := func(name, target string) tarEntry {
		return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, ModTime: sampleTime}}
	}
	hard := func(name, target string) tarEntry {
		return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target, ModTime: sampleTime}}
	}
	tests := []struct {
		name    string
		entries func(outside string) []tarEntry
		wantErr string
		want    map[string]string // inside dest, when no error
	}{{
		name:    "dot-dot name",
		entries: func(string) []tarEntry { return []tarEntry{reg("../escape", "x")} },
		wantErr: "leaves the destination",
	}, {
		name:    "dot-dot deeper",
		entries: func(string) []tarEntry { return []tarEntry{reg("a/../../escape", "x")} },
		wantErr: "leaves the destination",
	}, {
		name:    "absolute name is contained",
		entries: func(outside string) []tarEntry { return []tarEntry{reg(outside+"/abs", "x")} },
		want:    nil, // checked below: lands under dest
	}, {
		name:    "relative symlink out",
		entries: func(string) []tarEntry { return []tarEntry{sym("evil", "../../outside")} },
		wantErr: "leaves the destination",
	}, {
		name: "write through an absolute symlink stays inside",
		entries: func(outside string) []tarEntry {
			return []tarEntry{sym("evil", outside), reg("evil/pwned", "x")}
		},
	}, {
		name: "write through a symlink to root stays inside",
		entries: func(string) []tarEntry {
			return []tarEntry{sym("root", "/"), reg("root/pwned", "x")}
		},
		want: map[string]string{"root": "l 0:0 -> /", "pwned": "f 0644 0:0 x"},
	}, {
		name: "file replaces a symlink instead of writing through it",
		entries: func(outside string) []tarEntry {
			return []tarEntry{sym("f", outside+"/sentinel"), reg("f", "new")}
		},
		want: map[string]string{"f": "f 0644 0:0 new"},
	}, {
		name:    "hardlink out",
		entries: func(string) []tarEntry { return []tarEntry{hard("h", "../outside/sentinel")} },
		wantErr: "leaves the destination",
	}, {
		name: "hardlink through an absolute symlink stays inside",
		entries: func(outside string) []tarEntry {
			return []tarEntry{sym("d", outside), hard("h", "d/sentinel")}
		},
		wantErr: "no such file",
	}, {
		name: "hardlink to an absolute path stays inside",
		entries: func(outside string) []tarEntry {
			return []tarEntry{hard("h", outside+"/sentinel")}
		},
		wantErr: "no such file",
	}, {
		name: "whiteouts are plain files",
		entries: func(string) []tarEntry {
			return []tarEntry{reg("a", "A"), reg(".wh.a", ""), reg("d/.wh..wh..opq", "")}
		},
		want: map[string]string{"a": "f 0644 0:0 A", ".wh.a": "f 0644 0:0 ", "d": "d 0755 0:0", "d/.wh..wh..opq": "f 0644 0:0 "},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			outside := filepath.Join(base, "outside")
			build(t, base, dir("outside", 0o755), file("outside/sentinel", 0o644, "keep"), dir("dest", 0o755))
			dest := filepath.Join(base, "dest")
			data := makeTar(t, tc.entries(outside)...)
			ok, err := unpack(t.Context(), bytes.NewReader(data), dest, nil, nil)
			if !ok {
				t.Fatal("unpack() did not take the archive")
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("unpack() = %v, want an error containing %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("unpack() = %v", err)
			}
			// Nothing changed outside dest.
			outsideTree := describe(t, base)
			for p := range outsideTree {
				if p != "dest" && !strings.HasPrefix(p, "dest/") && p != "outside" && p != "outside/sentinel" {
					t.Errorf("%s written outside the destination", p)
				}
			}
			if got := outsideTree["outside/sentinel"]; got != "f 0644 0:0 keep" {
				t.Errorf("sentinel = %q, want it untouched", got)
			}
			if tc.want != nil {
				if diff := cmp.Diff(tc.want, describe(t, dest)); diff != "" {
					t.Errorf("destination tree (-want +got):\n%s", diff)
				}
			}
			if tc.name == "absolute name is contained" {
				if _, err := os.Stat(filepath.Join(dest, outside, "abs")); err != nil {
					t.Errorf("absolute entry not under dest: %v", err)
				}
			}
		})
	}
}

// FuzzExtract feeds arbitrary bytes to the extractor: it must never panic nor write
// outside its destination.
func FuzzExtract(f *testing.F) {
	f.Add(makeTar(f, sampleEntries...))
	f.Add(compress(f, "gzip", makeTar(f, sampleEntries...)))
	f.Add(makeTar(f,
		tarEntry{hdr: tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/"}},
		tarEntry{hdr: tar.Header{Name: "l/x", Typeflag: tar.TypeReg, Mode: 0o644}, data: "x"},
		tarEntry{hdr: tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "l/x"}},
		tarEntry{hdr: tar.Header{Name: "../y", Typeflag: tar.TypeReg, Mode: 0o644}, data: "y"},
	))
	f.Add([]byte("not an archive"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 || !smallArchive(data) {
			return
		}
		base := t.TempDir()
		dest := filepath.Join(base, "dest")
		if err := os.Mkdir(dest, 0o755); err != nil {
			t.Fatal(err)
		}
		writeBytes(t, filepath.Join(base, "sentinel"), []byte("keep"))
		me := &ids{uid: os.Getuid(), gid: os.Getgid()}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		unpack(ctx, bytes.NewReader(data), dest, me, nil) //nolint:errcheck // errors are fine, escapes are not
		entries, err := os.ReadDir(base)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "dest" && e.Name() != "sentinel" {
				t.Errorf("%s written outside the destination", e.Name())
			}
		}
		if dt, err := os.ReadFile(filepath.Join(base, "sentinel")); err != nil || string(dt) != "keep" {
			t.Errorf("sentinel = %q, %v; want it untouched", dt, err)
		}
		// Let TempDir's cleanup remove what the archive made read-only.
		filepath.Walk(dest, func(p string, fi os.FileInfo, err error) error { //nolint:errcheck
			if err == nil && fi.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
}

// smallArchive keeps the fuzzer away from entries whose size alone would take long to
// write (a sparse header can claim terabytes in a few bytes).
func smallArchive(data []byte) bool {
	tr, hdr, closeFn, ok := openArchive(bytes.NewReader(data))
	if !ok {
		return true
	}
	defer closeFn()
	var total int64
	for {
		total += hdr.Size
		if hdr.Size > 1<<20 || total > 8<<20 {
			return false
		}
		next, err := tr.Next()
		if err != nil {
			return true
		}
		hdr = next
	}
}
