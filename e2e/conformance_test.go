//go:build linux

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// conformanceDir holds one directory per case; see its README.md.
const conformanceDir = "testdata/conformance"

// TestConformance builds every case of testdata/conformance with the builder binary and
// checks the image it exports. One case: go test ./e2e -run 'TestConformance/NAME'.
func TestConformance(t *testing.T) {
	env := newConfEnv(t)
	env.root = newRoot(t)
	env.runAll(t, builderBackend{})
}

// confEnv is what every case of one test run shares.
type confEnv struct {
	casesDir   string // absolute path of testdata/conformance
	http       string // http://127.0.0.1:PORT serving casesDir, and git repos under /git/
	root       string // the shared store root
	baseDigest string // the base image by digest
	arch       string // GOARCH of the build platform
}

func newConfEnv(t *testing.T) *confEnv {
	t.Helper()
	dir, err := filepath.Abs(conformanceDir)
	if err != nil {
		t.Fatal(err)
	}
	env := &confEnv{casesDir: dir, arch: goarch()}
	ref, err := name.ParseReference(baseImage, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatalf("resolving %s: %v", baseImage, err)
	}
	env.baseDigest = ref.Context().Name() + "@" + desc.Digest.String()

	gitRoot := t.TempDir()
	mux := http.NewServeMux()
	mux.Handle("/git/", http.StripPrefix("/git/", http.FileServer(http.Dir(gitRoot))))
	mux.Handle("/", http.FileServer(http.Dir(dir)))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	env.http = "http://" + l.Addr().String()

	// Cases with a git/ directory get a repository served by dumb HTTP.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if fi, err := os.Stat(filepath.Join(dir, e.Name(), "git")); err == nil && fi.IsDir() {
			makeGitRepo(t, filepath.Join(dir, e.Name(), "git"), filepath.Join(gitRoot, e.Name()+".git"))
		}
	}
	return env
}

// makeGitRepo commits src in two commits, tagging the first v1: the second adds
// after-v1.txt, so a checkout of #v1 is told apart from the branch head.
func makeGitRepo(t *testing.T, src, bare string) {
	t.Helper()
	work := t.TempDir()
	if err := os.CopyFS(work, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	git := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_DATE=2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE=2024-01-01T00:00:00Z",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	git(work, "init", "-q", "-b", "main")
	git(work, "add", "-A")
	git(work, "commit", "-q", "-m", "first")
	git(work, "tag", "v1")
	if err := os.WriteFile(filepath.Join(work, "after-v1.txt"), []byte("later\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(work, "add", "-A")
	git(work, "commit", "-q", "-m", "second")
	git(filepath.Dir(bare), "clone", "-q", "--bare", work, bare)
	git(bare, "update-server-info")
}

// runAll runs every case as a parallel subtest.
func (env *confEnv) runAll(t *testing.T, be confBackend) {
	ents, err := os.ReadDir(env.casesDir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), "_") {
			continue
		}
		c, err := loadCase(filepath.Join(env.casesDir, e.Name()))
		if err != nil {
			t.Errorf("case %s: %v", e.Name(), err)
			continue
		}
		n++
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			env.run(t, be, c)
		})
	}
	if n == 0 {
		t.Fatal("no conformance cases found")
	}
}

// confBackend is what builds: the builder binary, or Docker's BuildKit as a referee.
type confBackend interface {
	// build builds ctxDir (Dockerfile and flags in args) and writes the image as an OCI
	// layout at out, tagged "case". It returns the run's outcome.
	build(t *testing.T, root string, args []string, stdin []byte, env []string, ctxDir, out string) result
	// push builds ctxDir and pushes the image to ref.
	push(t *testing.T, root, ctxDir, ref string) result
	// skip returns why the case cannot run on this backend ("" = it can).
	skip(c *confCase) string
}

// run prepares, builds and checks one case.
func (env *confEnv) run(t *testing.T, be confBackend, c *confCase) {
	if why := be.skip(c); why != "" {
		t.Skip(why)
	}
	work := t.TempDir()
	root := env.root
	if c.freshRoot {
		root = newRoot(t)
	}
	subst := strings.NewReplacer(
		"{{BASE_DIGEST}}", env.baseDigest,
		"{{BASE}}", baseImage,
		"{{REGISTRY}}", registry,
		"{{CASE}}", c.name,
		"{{ARCH}}", env.arch,
		"{{CASEDIR}}", c.dir,
		"{{WORK}}", work,
		"{{CONTEXT}}", filepath.Join(work, "context"),
		"{{HTTP}}", env.http+"/"+c.name+"/http",
		"{{GIT}}", env.http+"/git/"+c.name+".git",
	)
	var procEnv []string
	for _, e := range c.env {
		procEnv = append(procEnv, subst.Replace(e))
	}
	if c.sshAgent {
		procEnv = append(procEnv, "SSH_AUTH_SOCK="+startSSHAgent(t, work))
	}

	for i, s := range c.setups {
		w := strings.Fields(subst.Replace(s))
		if len(w) != 3 || (w[0] != "push" && w[0] != "oci") {
			t.Fatalf("setup %q: want push DIR REF or oci DIR PATH", s)
		}
		ctxDir := filepath.Join(work, fmt.Sprintf("setup%d", i))
		prepareConfContext(t, filepath.Join(c.dir, w[1]), ctxDir, "Dockerfile", subst, true)
		var r result
		if w[0] == "push" {
			r = be.push(t, root, ctxDir, w[2])
		} else {
			r = be.build(t, root, nil, nil, procEnv, ctxDir, w[2])
		}
		if r.err != nil {
			t.Fatalf("setup %q: %v\n%s", s, r.err, r.combined())
		}
	}

	ctxDir := filepath.Join(work, "context")
	prepareConfContext(t, c.dir, ctxDir, c.dockerfile, subst, c.stdin == "")
	editConfContext(t, c, ctxDir)
	var stdin []byte
	if c.stdin != "" {
		dt, err := os.ReadFile(filepath.Join(c.dir, c.stdin))
		if err != nil {
			t.Fatal(err)
		}
		stdin = []byte(subst.Replace(string(dt)))
	}
	args, err := splitConfWords(subst.Replace(c.args))
	if err != nil {
		t.Fatalf("args: %v", err)
	}
	if c.dockerfile != "Dockerfile" {
		args = append([]string{"-f", filepath.Join(ctxDir, c.dockerfile)}, args...)
	}

	out := filepath.Join(work, "out")
	r := be.build(t, root, args, stdin, procEnv, ctxDir, out)
	if strings.Contains(r.stderr, "panic:") {
		t.Fatalf("the build panicked:\n%s", r.stderr)
	}
	if c.expectErr != "" {
		if r.err == nil {
			t.Fatalf("the build succeeded, want an error matching %s\n%s", c.expectErr, r.combined())
		}
		env.checkError(t, be, c, r)
		return
	}
	if r.err != nil {
		t.Fatalf("build: %v\n%s", r.err, r.combined())
	}
	if c.rebuild != nil {
		args2, err := splitConfWords(subst.Replace(*c.rebuild))
		if err != nil {
			t.Fatalf("rebuild: %v", err)
		}
		if c.dockerfile != "Dockerfile" {
			args2 = append([]string{"-f", filepath.Join(ctxDir, c.dockerfile)}, args2...)
		}
		out = filepath.Join(work, "out2")
		r = be.build(t, root, args2, stdin, procEnv, ctxDir, out)
		if r.err != nil {
			t.Fatalf("second build: %v\n%s", r.err, r.combined())
		}
	}
	b := inspectLayout(t, out, filepath.Join(work, "bundle"))
	b.output = r.combined()
	failed := false
	for _, ch := range c.checks {
		if err := b.check(subst.Replace(ch.text)); err != nil {
			t.Errorf("case.txt:%d: %s\n    %v", ch.line, ch.text, err)
			failed = true
		}
	}
	if failed {
		hist, _ := json.MarshalIndent(b.config["history"], "", "  ")
		cfg, _ := json.MarshalIndent(b.config["config"], "", "  ")
		t.Logf("config: %s\nhistory: %s\nlayers: %d\nbuild output:\n%s", cfg, hist, b.layers, r.combined())
	}
}

// editConfContext applies the case's symlink, tar, chmod and chown lines to the copied
// context: what git cannot hold or the test must not depend on.
func editConfContext(t *testing.T, c *confCase, ctxDir string) {
	t.Helper()
	for _, l := range c.symlinks {
		if err := os.Symlink(l[1], filepath.Join(ctxDir, l[0])); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range c.tars {
		writeConfArchive(t, filepath.Join(c.dir, a[1]), filepath.Join(ctxDir, a[0]))
	}
	for _, m := range c.chmods {
		var mode os.FileMode
		if _, err := fmt.Sscanf(m[0], "%o", &mode); err != nil {
			t.Fatalf("chmod %s: %v", m[0], err)
		}
		// os.Chmod drops setuid/setgid/sticky unless they are spelt as Go mode bits.
		if err := os.Chmod(filepath.Join(ctxDir, m[1]), mode&0o777|goModeBits(mode)); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range c.chowns {
		var uid, gid int
		if _, err := fmt.Sscanf(o[0], "%d:%d", &uid, &gid); err != nil {
			t.Fatalf("chown %s: %v", o[0], err)
		}
		if err := os.Lchown(filepath.Join(ctxDir, o[1]), uid, gid); err != nil {
			t.Fatal(err)
		}
	}
}

// checkError matches the failing build's stderr against the case's regexp. Docker words
// its errors differently, so there only the failure itself counts.
func (env *confEnv) checkError(t *testing.T, be confBackend, c *confCase, r result) {
	t.Helper()
	if _, ok := be.(builderBackend); !ok {
		return
	}
	// The message, not the Dockerfile excerpt printed under it, must name the word.
	var msg []string
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "error:") {
			msg = append(msg, l)
		}
	}
	if msg == nil {
		msg = []string{r.stderr}
	}
	t.Logf("failed as expected: %s", strings.Join(msg, "\n"))
	if ok, _ := regexp.MatchString(c.expectErr, strings.Join(msg, "\n")); !ok {
		t.Errorf("the error message does not match %s:\n%s", c.expectErr, r.stderr)
	}
	for _, ch := range c.checks {
		b := &confImage{output: r.combined()}
		if !strings.HasPrefix(ch.text, "output") {
			t.Errorf("case.txt:%d: an error case can only check its output", ch.line)
			continue
		}
		if err := b.check(ch.text); err != nil {
			t.Errorf("case.txt:%d: %s\n    %v", ch.line, ch.text, err)
		}
	}
}

// prepareConfContext copies src/context to dst with normalised modes (directories 0755,
// files 0644 or 0755: a checkout's umask must not leak into the image) and, when
// writeDockerfile, src/Dockerfile with placeholders replaced to dst/dockerfile.
func prepareConfContext(t *testing.T, src, dst, dockerfile string, subst *strings.Replacer, writeDockerfile bool) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	from := filepath.Join(src, "context")
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == from {
				return filepath.SkipDir
			}
			return err
		}
		rel, _ := filepath.Rel(from, p)
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			if err := os.MkdirAll(to, 0o755); err != nil {
				return err
			}
			return os.Chmod(to, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, to)
		default:
			fi, err := d.Info()
			if err != nil {
				return err
			}
			dt, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if fi.Mode()&0o111 != 0 {
				mode = 0o755
			}
			if err := os.WriteFile(to, dt, mode); err != nil {
				return err
			}
			return os.Chmod(to, mode)
		}
	})
	if err != nil {
		t.Fatalf("copying the context: %v", err)
	}
	if !writeDockerfile {
		return
	}
	dt, err := os.ReadFile(filepath.Join(src, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dst, dockerfile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(subst.Replace(string(dt))), 0o644); err != nil {
		t.Fatal(err)
	}
}

func goModeBits(m os.FileMode) os.FileMode {
	var out os.FileMode
	if m&0o4000 != 0 {
		out |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

// writeConfArchive writes the tree at src as a tar to dst, compressed by dst's extension
// with the distribution's tools (.tar.gz, .tar.bz2, .tar.xz, .tar.zst). Entries are
// owned by 0:0 except names containing "owned1000", which 1000:1000 own.
func writeConfArchive(t *testing.T, src, dst string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var paths []string
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != src {
			paths = append(paths, p)
		}
		return nil
	})
	sort.Strings(paths)
	mod := time.Unix(1700000000, 0)
	for _, p := range paths {
		rel, _ := filepath.Rel(src, p)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		h := &tar.Header{Name: rel, ModTime: mod, Mode: 0o644, Format: tar.FormatPAX}
		if strings.Contains(rel, "owned1000") {
			h.Uid, h.Gid = 1000, 1000
		}
		switch {
		case fi.IsDir():
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, rel+"/", 0o755
		case fi.Mode()&fs.ModeSymlink != 0:
			h.Typeflag, h.Mode = tar.TypeSymlink, 0o777
			h.Linkname, _ = os.Readlink(p)
		default:
			dt, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&0o111 != 0 {
				h.Mode = 0o755
			}
			h.Typeflag, h.Size = tar.TypeReg, int64(len(dt))
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			tw.Write(dt)
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var compress []string
	switch {
	case strings.HasSuffix(dst, ".tar"):
	case strings.HasSuffix(dst, ".gz"), strings.HasSuffix(dst, ".tgz"):
		compress = []string{"gzip", "-n", "-c"}
	case strings.HasSuffix(dst, ".bz2"):
		compress = []string{"bzip2", "-c"}
	case strings.HasSuffix(dst, ".xz"):
		compress = []string{"xz", "-c"}
	case strings.HasSuffix(dst, ".zst"):
		compress = []string{"zstd", "-q", "-c"}
	default:
		t.Fatalf("tar: %s: unknown archive extension", dst)
	}
	dt := buf.Bytes()
	if compress != nil {
		cmd := exec.Command(compress[0], compress[1:]...)
		cmd.Stdin = &buf
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s (apt-get install %s): %v", compress[0], compress[0], err)
		}
		dt = out
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, dt, 0o644); err != nil {
		t.Fatal(err)
	}
}

// startSSHAgent runs an ssh-agent holding a fresh key and returns its socket.
func startSSHAgent(t *testing.T, work string) string {
	t.Helper()
	for _, tool := range []string{"ssh-agent", "ssh-add", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install openssh-client): RUN --mount=type=ssh needs an agent", tool)
		}
	}
	sock := filepath.Join(work, "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.Process.Kill()
		agent.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ssh-agent did not create its socket")
		}
	}
	key := filepath.Join(work, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	add := exec.Command("ssh-add", "-q", key)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v\n%s", err, out)
	}
	return sock
}

// configSuffix names a file beside an OCI layout that holds the image config to check
// instead of the layout's (see dockerBackend.build).
const configSuffix = ".config.json"

// inspectLayout unpacks the image tagged "case" in the OCI layout at dir with umoci
// into bundle and reads its config and layers.
func inspectLayout(t *testing.T, dir, bundle string) *confImage {
	t.Helper()
	if out, err := exec.Command("umoci", "unpack", "--image", dir+":case", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	b := &confImage{rootfs: filepath.Join(bundle, "rootfs")}
	for _, d := range im.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] != "case" {
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if b.rawConfig, err = img.RawConfigFile(); err != nil {
			t.Fatal(err)
		}
		if dt, err := os.ReadFile(dir + configSuffix); err == nil {
			b.rawConfig = dt
		}
		if err := json.Unmarshal(b.rawConfig, &b.config); err != nil {
			t.Fatal(err)
		}
		ls, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		b.layers = len(ls)
		for _, l := range ls {
			rc, err := l.Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			dt, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			b.blobs = append(b.blobs, dt)
		}
		return b
	}
	t.Fatalf("no image tagged case in the layout %s", dir)
	return nil
}

// runConfTool runs a command with stdin and extra environment, bounded in time.
func runConfTool(stdin []byte, env []string, name string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return result{out.String(), errb.String(), err}
}

// builderBackend builds with the binary under test.
type builderBackend struct{}

func (builderBackend) build(t *testing.T, root string, args []string, stdin []byte, env []string, ctxDir, out string) result {
	full := append([]string{"--root", root, "build", "--progress=plain",
		"--output", "type=oci,tar=false,name=conformance:case,dest=" + out}, args...)
	return runConfTool(stdin, env, builderBin, append(full, ctxDir)...)
}

func (builderBackend) push(t *testing.T, root, ctxDir, ref string) result {
	return runConfTool(nil, nil, builderBin, "--root", root, "build", "--progress=plain",
		"--output", "type=image,name="+ref+",push=true", ctxDir)
}

func (builderBackend) skip(*confCase) string { return "" }
