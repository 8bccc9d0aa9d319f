//go:build linux

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// builderIO runs the binary with extra environment and stdout going to w.
func builderIO(t testing.TB, root string, env []string, w io.Writer, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, builderBin, append([]string{"--root", root}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = w, &errb
	err := cmd.Run()
	return result{"", errb.String(), err}
}

// tool runs an external program and returns its stdout, failing the test on error.
func tool(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr []byte
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr)
	}
	return out
}

// skopeoManifest is what the tests read of `skopeo inspect --raw`.
type skopeoManifest struct {
	MediaType string `json:"mediaType"`
	Config    struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
	} `json:"config"`
	Layers []struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
	} `json:"layers"`
	Annotations map[string]string `json:"annotations"`
}

// inspectRaw returns the manifest skopeo reads at ref and its digest.
func inspectRaw(t *testing.T, ref string, flags ...string) (skopeoManifest, string) {
	t.Helper()
	raw := tool(t, "skopeo", append(append([]string{"inspect", "--raw"}, flags...), ref)...)
	var m skopeoManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("skopeo inspect --raw %s: %v\n%s", ref, err, raw)
	}
	sum := sha256.Sum256(raw)
	return m, "sha256:" + hex.EncodeToString(sum[:])
}

// configDigest is the digest of the config skopeo reads at ref: the image ID.
func configDigest(t *testing.T, ref string, flags ...string) string {
	t.Helper()
	raw := tool(t, "skopeo", append(append([]string{"inspect", "--raw", "--config"}, flags...), ref)...)
	sum := sha256.Sum256(raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

const outputsDockerfile = `FROM {{BASE}}
RUN mkdir -p /app/bin /app/data && echo hello > /app/data/hello.txt \
 && ln -s ../data/hello.txt /app/bin/hello-link && ln /app/data/hello.txt /app/data/hard.txt \
 && echo secret > /app/data/private && chmod 0600 /app/data/private && chown 1000:1000 /app/data/private
COPY big.txt /app/big.txt
CMD ["cat", "/app/data/hello.txt"]
`

// TestOutputFormats builds once with every output type and compression and reads
// each result back with skopeo, umoci and tar.
func TestOutputFormats(t *testing.T) {
	root := newRoot(t)
	ctxDir := writeContext(t, map[string]string{
		"Dockerfile": outputsDockerfile,
		"big.txt":    strings.Repeat("compressible text\n", 20000),
	})
	out := t.TempDir()
	o := func(p string) string { return filepath.Join(out, p) }
	pushRef := registry + "/e2e/outputs:zstd"
	mustBuilder(t, root, "build", "--progress=plain", "-t", "outputs:1",
		"--metadata-file", o("metadata.json"), "--iidfile", o("iid"),
		"--output", "type=oci,dest="+o("oci-gzip.tar")+",name=outputs:1",
		"--output", "type=oci,tar=false,dest="+o("oci-zstd")+",name=outputs:1,compression=zstd,compression-level=9,annotation.org.opencontainers.image.title=outputs",
		"--output", "type=oci,tar=false,dest="+o("oci-raw")+",name=outputs:raw,compression=uncompressed",
		"--output", "type=docker,dest="+o("docker-gzip.tar")+",name=outputs:1",
		"--output", "type=docker,dest="+o("docker-zstd.tar")+",name=outputs:1,compression=zstd",
		"--output", "type=docker,dest="+o("docker-raw.tar")+",name=outputs:1,compression=uncompressed",
		"--output", "type=registry,name="+pushRef+",compression=zstd",
		"--output", "type=local,dest="+o("fs"),
		"--output", "type=tar,dest="+o("fs.tar"),
		ctxDir)

	var md map[string]any
	dt, err := os.ReadFile(o("metadata.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(dt, &md); err != nil {
		t.Fatalf("metadata file: %v\n%s", err, dt)
	}
	iid, err := os.ReadFile(o("iid"))
	if err != nil {
		t.Fatal(err)
	}

	const (
		ociGzip  = "application/vnd.oci.image.layer.v1.tar+gzip"
		ociZstd  = "application/vnd.oci.image.layer.v1.tar+zstd"
		ociRaw   = "application/vnd.oci.image.layer.v1.tar"
		dockGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"
		dockRaw  = "application/vnd.docker.image.rootfs.diff.tar"
	)
	for _, tc := range []struct {
		ref        string
		manifest   string // media type of the manifest, "" when skopeo makes one up (docker-archive)
		layer      string // media type of the layers builder made (the last one)
		annotation string
	}{
		{"oci-archive:" + o("oci-gzip.tar") + ":1", "application/vnd.oci.image.manifest.v1+json", ociGzip, ""},
		{"oci:" + o("oci-zstd") + ":1", "application/vnd.oci.image.manifest.v1+json", ociZstd, "outputs"},
		{"oci:" + o("oci-raw") + ":raw", "application/vnd.oci.image.manifest.v1+json", ociRaw, ""},
		{"docker-archive:" + o("docker-gzip.tar"), "", dockGzip, ""},
		{"docker-archive:" + o("docker-zstd.tar"), "", "", ""},
		{"docker-archive:" + o("docker-raw.tar"), "", "", ""},
		{"docker://" + pushRef, "application/vnd.oci.image.manifest.v1+json", ociZstd, ""},
	} {
		t.Run(tc.ref[strings.LastIndex(tc.ref, "/")+1:], func(t *testing.T) {
			var inspectFlags, copyFlags []string
			if strings.HasPrefix(tc.ref, "docker://") {
				inspectFlags, copyFlags = []string{"--tls-verify=false"}, []string{"--src-tls-verify=false"}
			}
			// Every output holds the same config: the image ID of --iidfile.
			if got := configDigest(t, tc.ref, inspectFlags...); got != string(iid) {
				t.Errorf("config digest %s, iidfile %s", got, iid)
			}
			m, _ := inspectRaw(t, tc.ref, inspectFlags...)
			if tc.manifest != "" && m.MediaType != tc.manifest {
				t.Errorf("manifest media type %s, want %s", m.MediaType, tc.manifest)
			}
			if tc.layer != "" {
				if got := m.Layers[len(m.Layers)-1].MediaType; got != tc.layer {
					t.Errorf("layer media type %s, want %s", got, tc.layer)
				}
			}
			if tc.annotation != "" && m.Annotations["org.opencontainers.image.title"] != tc.annotation {
				t.Errorf("manifest annotations %v, want the title %s", m.Annotations, tc.annotation)
			}
			// skopeo copies it, reading every blob through its digest.
			dst := "oci:" + filepath.Join(t.TempDir(), "copy") + ":x"
			tool(t, "skopeo", append(append([]string{"copy", "-q"}, copyFlags...), tc.ref, dst)...)
		})
	}

	// The metadata describes the first image output, the gzip OCI archive, and its
	// manifest digest is what skopeo computes.
	_, want := inspectRaw(t, "oci-archive:"+o("oci-gzip.tar")+":1")
	if md["containerimage.digest"] != want {
		t.Errorf("metadata containerimage.digest = %v, skopeo says %s", md["containerimage.digest"], want)
	}
	if md["containerimage.config.digest"] != string(iid) || !strings.HasPrefix(string(iid), "sha256:") {
		t.Errorf("metadata config digest %v, iidfile %q", md["containerimage.config.digest"], iid)
	}
	if md["image.name"] != "docker.io/library/outputs:1" {
		t.Errorf("metadata image.name = %v", md["image.name"])
	}

	// The OCI layout names the image for umoci, which unpacks a runnable bundle
	// (umoci 0.4 reads gzip and uncompressed layers, not zstd).
	bundle := filepath.Join(t.TempDir(), "bundle")
	tool(t, "umoci", "unpack", "--image", o("oci-raw")+":raw", bundle)
	if dt, err := os.ReadFile(filepath.Join(bundle, "rootfs/app/data/hello.txt")); err != nil || string(dt) != "hello\n" {
		t.Errorf("umoci unpack: hello.txt = %q, %v", dt, err)
	}
	var index struct {
		Manifests []struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	dt, _ = os.ReadFile(filepath.Join(o("oci-zstd"), "index.json"))
	if err := json.Unmarshal(dt, &index); err != nil || len(index.Manifests) != 1 ||
		index.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "1" {
		t.Errorf("index.json lacks the ref.name annotation: %s", dt)
	}

	checkLocal(t, o("fs"))
	checkFSTar(t, o("fs.tar"))
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file left in the output directory: %s", e.Name())
		}
	}
}

// checkLocal checks the type=local export: contents, symlink, hard link, modes, owners.
func checkLocal(t *testing.T, dir string) {
	t.Helper()
	if dt, err := os.ReadFile(filepath.Join(dir, "app/data/hello.txt")); err != nil || string(dt) != "hello\n" {
		t.Errorf("local: hello.txt = %q, %v", dt, err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "app/bin/hello-link")); err != nil || l != "../data/hello.txt" {
		t.Errorf("local: hello-link -> %q, %v", l, err)
	}
	a, _ := os.Stat(filepath.Join(dir, "app/data/hello.txt"))
	b, _ := os.Stat(filepath.Join(dir, "app/data/hard.txt"))
	if a == nil || b == nil || !os.SameFile(a, b) {
		t.Error("local: hard.txt is not a hard link of hello.txt")
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(dir, "app/data/private"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o600 || st.Uid != 1000 || st.Gid != 1000 {
		t.Errorf("local: private has mode %o owner %d:%d, want 0600 1000:1000", st.Mode&0o7777, st.Uid, st.Gid)
	}
	if fi, err := os.Stat(filepath.Join(dir, "bin/busybox")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("local: bin/busybox: %v, %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "app/big.txt")); err != nil || fi.Size() != int64(len("compressible text\n")*20000) {
		t.Errorf("local: app/big.txt: %v, %v", fi, err)
	}
}

// checkFSTar checks the type=tar export lists the final filesystem in order.
func checkFSTar(t *testing.T, p string) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	hdrs := map[string]*tar.Header{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		hdrs[hdr.Name] = hdr
	}
	if !slices.IsSorted(names) {
		t.Error("tar entries are not sorted")
	}
	for _, n := range []string{"app/", "app/data/hello.txt", "bin/busybox", "etc/passwd"} {
		if hdrs[n] == nil {
			t.Errorf("tar lacks %s", n)
		}
	}
	if h := hdrs["app/data/private"]; h == nil || h.Uid != 1000 || h.Mode != 0o600 {
		t.Errorf("tar: app/data/private = %+v", h)
	}
	hard, hello := hdrs["app/data/hard.txt"], hdrs["app/data/hello.txt"]
	if hard == nil || hello == nil || hard.Typeflag != tar.TypeReg || hello.Typeflag != tar.TypeLink || hello.Linkname != "app/data/hard.txt" {
		t.Errorf("tar: hard link not kept: hard=%+v hello=%+v", hard, hello)
	}
}

// TestOutputStdout: dest=- streams the docker tarball and the filesystem tar to
// standard output, which consumers read.
func TestOutputStdout(t *testing.T) {
	root := newRoot(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN echo out > /out.txt\n"})
	dir := t.TempDir()
	for _, tc := range []struct{ spec, file string }{
		{"type=docker,dest=-,name=stdout:1", "docker.tar"},
		{"type=oci,dest=-,name=stdout:1", "oci.tar"},
		{"-", "fs.tar"},
	} {
		f, err := os.Create(filepath.Join(dir, tc.file))
		if err != nil {
			t.Fatal(err)
		}
		r := builderIO(t, root, nil, f, "build", "--progress=plain", "--output", tc.spec, ctxDir)
		f.Close()
		if r.err != nil {
			t.Fatalf("--output %s: %v\n%s", tc.spec, r.err, r.stderr)
		}
	}
	m, _ := inspectRaw(t, "docker-archive:"+filepath.Join(dir, "docker.tar"))
	if len(m.Layers) != 2 {
		t.Errorf("docker tarball from stdout has %d layers, want 2", len(m.Layers))
	}
	tool(t, "skopeo", "inspect", "oci-archive:"+filepath.Join(dir, "oci.tar")+":1")
	list := tool(t, "tar", "-tf", filepath.Join(dir, "fs.tar"))
	if !strings.Contains(string(list), "out.txt") || !strings.Contains(string(list), "bin/busybox") {
		t.Errorf("filesystem tar from stdout lacks files:\n%.500s", list)
	}
}

// TestConversionOnce: a zstd output converts each layer once; exporting again (a
// cached rebuild, another process) reuses the blobs and their records.
func TestConversionOnce(t *testing.T) {
	root := newRoot(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN echo z > /z.txt\n"})
	out := t.TempDir()
	records := filepath.Join(root, "converted")
	inodes := func() map[string]uint64 {
		m := map[string]uint64{}
		ents, err := os.ReadDir(records)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(records, e.Name()), &st); err != nil {
				t.Fatal(err)
			}
			m[e.Name()] = st.Ino
		}
		return m
	}
	mustBuilder(t, root, "build", "--output", "type=oci,compression=zstd,dest="+filepath.Join(out, "1.tar"), ctxDir)
	first := inodes()
	if len(first) != 2 {
		t.Fatalf("%d conversion records after exporting 2 layers as zstd, want 2: %v", len(first), first)
	}
	mustBuilder(t, root, "build", "--output", "type=oci,compression=zstd,dest="+filepath.Join(out, "2.tar"),
		"--output", "type=docker,compression=zstd,dest="+filepath.Join(out, "3.tar"), ctxDir)
	if d := fmt.Sprint(inodes()); d != fmt.Sprint(first) {
		t.Errorf("conversion records rewritten: %v, then %v", first, d)
	}
	a, _ := os.ReadFile(filepath.Join(out, "1.tar"))
	b, _ := os.ReadFile(filepath.Join(out, "2.tar"))
	if !bytes.Equal(a, b) {
		t.Error("the cached rebuild's OCI archive differs from the first")
	}
}

// TestExportDiskFull: an export that runs out of space fails and leaves no partial
// file; a reader of standard output that goes away fails the build, too.
func TestExportDiskFull(t *testing.T) {
	root := newRoot(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN echo full > /full.txt\n"})
	small := t.TempDir()
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(small, unix.MNT_DETACH) })
	for _, spec := range []string{
		"type=docker,dest=" + filepath.Join(small, "img.tar"),
		"type=oci,dest=" + filepath.Join(small, "oci.tar"),
		"type=oci,tar=false,dest=" + filepath.Join(small, "layout"),
		"type=tar,dest=" + filepath.Join(small, "fs.tar"),
		"type=local,dest=" + filepath.Join(small, "fs"),
	} {
		r := builder(t, root, "build", "--output", spec, ctxDir)
		if r.err == nil {
			t.Errorf("--output %s on a 64k tmpfs succeeded", spec)
		} else if !strings.Contains(r.stderr, "no space left") {
			t.Errorf("--output %s: error does not say the disk is full:\n%s", spec, r.stderr)
		}
		if ents, _ := os.ReadDir(small); len(ents) != 0 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("--output %s left %v on the full disk", spec, names)
		}
	}

	// Standard output closed by its reader.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pr.Close()
	r := builderIO(t, root, nil, pw, "build", "--output", "type=docker,dest=-", ctxDir)
	pw.Close()
	if r.err == nil {
		t.Error("export to a closed pipe succeeded")
	}
	// The store is still fine.
	mustBuilder(t, root, "build", "--output", "type=docker,dest="+filepath.Join(t.TempDir(), "ok.tar"), ctxDir)
}

// TestOutputErrors: bad specs fail before building and name the problem.
func TestOutputErrors(t *testing.T) {
	root := newRoot(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM {{BASE}}\n"})
	for spec, want := range map[string]string{
		"type=oci,dest=x,colour=red":                               `unknown attribute "colour"`,
		"type=docker,dest=x,compression=zstd,oci-mediatypes=false": "conflicts",
		"type=oci,dest=x,compression=brotli":                       "unknown compression",
	} {
		r := builder(t, root, "build", "--output", spec, ctxDir)
		if r.err == nil || !strings.Contains(r.stderr, want) {
			t.Errorf("--output %s: err %v, stderr %q; want %q", spec, r.err, r.stderr, want)
		}
	}
}
