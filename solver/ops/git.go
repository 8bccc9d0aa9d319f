package ops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
)

// gitOp checks out one commit of a git repository with the git binary, the way
// BuildKit's git source does: the ref is resolved with ls-remote (that is the key),
// then only that commit is fetched, shallow when the server allows it.
type gitOp struct {
	d        Deps
	remote   string // as the user wrote it: URL, scp-like, or local path
	ref      string // "" for the remote's HEAD
	subdir   string // cleaned, "" for the whole tree
	keepGit  bool
	checksum string

	mu  sync.Mutex
	res *gitResolved
}

// gitResolved is what ls-remote said a ref is.
type gitResolved struct {
	commit string
	// name is the full ref that matched (refs/heads/main), "" when the ref was a commit.
	name string
	// tag is the tag object of an annotated tag, which commit is the target of.
	tag string
}

// commitRE matches full commit ids: sha1 or sha256 repositories.
var commitRE = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

func newGitOp(d Deps, op *llb.SourceOp) (solver.Op, error) {
	o := &gitOp{
		d:        d,
		remote:   strings.TrimPrefix(op.Identifier, llb.GitScheme),
		ref:      op.Attrs[llb.AttrGitRef],
		keepGit:  op.Attrs[llb.AttrGitKeepDir] == "true",
		checksum: strings.ToLower(op.Attrs[llb.AttrGitChecksum]),
	}
	if o.remote == "" {
		return nil, fmt.Errorf("source %q: no git remote", op.Identifier)
	}
	if strings.HasPrefix(o.remote, "-") || strings.HasPrefix(o.ref, "-") {
		return nil, fmt.Errorf("git source %s: remote and ref must not start with '-'", o.shown())
	}
	if s := op.Attrs[llb.AttrGitSubdir]; s != "" {
		if sub := strings.TrimPrefix(path.Clean("/"+s), "/"); sub != "" {
			o.subdir = sub
		}
	}
	return o, nil
}

// gitKeyVersion versions the extra key of git sources.
const gitKeyVersion = 1

func (o *gitOp) CacheKey(ctx context.Context, _ []solver.Result) (digest.Digest, error) {
	res, err := o.resolved(ctx)
	if err != nil {
		return "", err
	}
	k := struct {
		V       int    `json:"v"`
		Commit  string `json:"commit"`
		Subdir  string `json:"subdir,omitempty"`
		KeepGit bool   `json:"keepGitDir,omitempty"`
		Ref     string `json:"ref,omitempty"`
	}{V: gitKeyVersion, Commit: res.commit, Subdir: o.subdir, KeepGit: o.keepGit}
	if o.keepGit {
		// The kept .git names the ref.
		k.Ref = res.name
	}
	return keyOf(k)
}

func (o *gitOp) resolved(ctx context.Context) (*gitResolved, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.res != nil {
		return o.res, nil
	}
	res, err := o.resolve(ctx)
	if err != nil {
		return nil, err
	}
	o.res = res
	return res, nil
}

// resolve turns the ref into a commit. A full commit id is taken as is; anything else
// is looked up with ls-remote, preferring, as git checkout does, an exact ref, then a
// branch, then a tag (peeled to its commit).
func (o *gitOp) resolve(ctx context.Context) (*gitResolved, error) {
	if commitRE.MatchString(o.ref) {
		if o.checksum != "" && !strings.HasPrefix(o.ref, o.checksum) {
			return nil, fmt.Errorf("git source %s: commit %s does not match checksum %s", o.shown(), o.ref, o.checksum)
		}
		return &gitResolved{commit: o.ref}, nil
	}
	tmp, err := os.MkdirTemp(o.tempDir(), "git-ls-")
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", o.shown(), err)
	}
	defer os.RemoveAll(tmp)

	var out []byte
	if o.ref == "" {
		out, err = o.git(ctx, tmp, "ls-remote", "--symref", "--", o.remote, "HEAD")
	} else {
		out, err = o.git(ctx, tmp, "ls-remote", "--", o.remote, o.ref, o.ref+"^{}")
	}
	if err != nil {
		return nil, fmt.Errorf("resolving ref %s of %s: %w", o.refShown(), o.shown(), err)
	}

	var res gitResolved
	if o.ref == "" {
		for line := range strings.Lines(string(out)) {
			line = strings.TrimSpace(line)
			if target, ok := strings.CutPrefix(line, "ref: "); ok {
				res.name, _, _ = strings.Cut(target, "\t")
			} else if sha, name, _ := strings.Cut(line, "\t"); name == "HEAD" {
				res.commit = sha
			}
		}
		if res.name == "" {
			res.name = "HEAD"
		}
	} else {
		exact := "refs/" + strings.TrimPrefix(o.ref, "refs/")
		head := "refs/heads/" + strings.TrimPrefix(o.ref, "refs/heads/")
		tag := "refs/tags/" + strings.TrimPrefix(o.ref, "refs/tags/")
		found := map[string]string{}
		for line := range strings.Lines(string(out)) {
			sha, name, _ := strings.Cut(strings.TrimSpace(line), "\t")
			found[name] = sha
		}
		switch {
		case found[exact] != "" && found[exact+"^{}"] == "":
			res = gitResolved{commit: found[exact], name: exact}
		case found[head] != "":
			res = gitResolved{commit: found[head], name: head}
		case found[tag] != "":
			res = gitResolved{commit: found[tag], name: tag}
			if peeled := found[tag+"^{}"]; peeled != "" {
				// An annotated tag: check out the commit it points to.
				res.tag, res.commit = found[tag], peeled
			}
		}
	}
	if res.commit == "" {
		return nil, fmt.Errorf("resolving ref %s of %s: the repository has no such ref", o.refShown(), o.shown())
	}
	if !commitRE.MatchString(res.commit) {
		return nil, fmt.Errorf("resolving ref %s of %s: ls-remote gave %q, not a commit id", o.refShown(), o.shown(), res.commit)
	}
	if o.checksum != "" && !strings.HasPrefix(res.commit, o.checksum) && (res.tag == "" || !strings.HasPrefix(res.tag, o.checksum)) {
		return nil, fmt.Errorf("git source %s: ref %s is commit %s, which does not match checksum %s", o.shown(), o.refShown(), res.commit, o.checksum)
	}
	return &res, nil
}

func (o *gitOp) Exec(ctx context.Context, _ []solver.Result, logs io.Writer) (cache.Ref, error) {
	res, err := o.resolved(ctx)
	if err != nil {
		return cache.Ref{}, err
	}
	a, err := o.d.Snapshots.Ingest(ctx)
	if err != nil {
		return cache.Ref{}, err
	}
	defer a.Discard(ctx)
	upper := a.UpperDir()

	// With .git kept (and no subdir) the repository is made in place; otherwise it is
	// a bare one in the temp dir, checked out into the snapshot.
	var gitDir, workTree string
	if o.keepGit && o.subdir == "" {
		workTree, gitDir = upper, filepath.Join(upper, ".git")
		if _, err := o.git(ctx, upper, "init", "-q", upper); err != nil {
			return cache.Ref{}, fmt.Errorf("checking out %s: %w", o.shown(), err)
		}
	} else {
		gitDir, err = os.MkdirTemp(o.tempDir(), "git-")
		if err != nil {
			return cache.Ref{}, fmt.Errorf("checking out %s: %w", o.shown(), err)
		}
		defer os.RemoveAll(gitDir)
		if _, err := o.git(ctx, gitDir, "init", "-q", "--bare", gitDir); err != nil {
			return cache.Ref{}, fmt.Errorf("checking out %s: %w", o.shown(), err)
		}
		workTree = upper
		if o.subdir != "" {
			// Inside the snapshot so that moving the subdir up is a rename.
			workTree, err = os.MkdirTemp(upper, ".checkout-")
			if err != nil {
				return cache.Ref{}, fmt.Errorf("checking out %s: %w", o.shown(), err)
			}
		}
	}
	repo := func(args ...string) ([]byte, error) {
		return o.git(ctx, workTree, append([]string{"--git-dir", gitDir, "--work-tree", workTree}, args...)...)
	}
	if _, err := repo("remote", "add", "origin", o.remote); err != nil {
		return cache.Ref{}, fmt.Errorf("checking out %s: %w", o.shown(), err)
	}
	fmt.Fprintf(logs, "fetching %s %s (%s)\n", o.shown(), o.refShown(), res.commit)
	if err := o.fetch(ctx, repo, res); err != nil {
		return cache.Ref{}, err
	}

	if o.keepGit && o.subdir == "" {
		if strings.HasPrefix(res.name, "refs/") {
			target := res.commit
			if _, err := repo("cat-file", "-e", res.tag); res.tag != "" && err == nil {
				target = res.tag // keep the annotated tag as it is
			}
			if _, err := repo("update-ref", res.name, target); err != nil {
				return cache.Ref{}, fmt.Errorf("checking out %s: %w", o.shown(), err)
			}
		}
		_, err = repo("checkout", "-q", "--detach", res.commit)
	} else {
		_, err = repo("checkout", "-q", "--no-overlay", res.commit, "--", ".")
	}
	if err != nil {
		return cache.Ref{}, fmt.Errorf("checking out commit %s of %s: %w", res.commit, o.shown(), err)
	}
	if _, err := os.Stat(filepath.Join(workTree, ".gitmodules")); err == nil {
		if err := o.submodules(repo); err != nil {
			return cache.Ref{}, err
		}
	}
	if o.keepGit && o.subdir == "" {
		// Leave a repository that says nothing about this fetch or its credentials.
		if _, err := repo("remote", "set-url", "origin", o.shown()); err != nil {
			return cache.Ref{}, fmt.Errorf("checking out %s: %w", o.shown(), err)
		}
		if _, err := repo("reflog", "expire", "--all", "--expire=now"); err != nil {
			return cache.Ref{}, fmt.Errorf("checking out %s: %w", o.shown(), err)
		}
		if err := os.Remove(filepath.Join(gitDir, "FETCH_HEAD")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return cache.Ref{}, fmt.Errorf("checking out %s: %w", o.shown(), err)
		}
	}
	if o.subdir != "" {
		if err := moveSubdirUp(workTree, o.subdir, upper); err != nil {
			return cache.Ref{}, fmt.Errorf("taking subdir %s of %s at %s: %w", o.subdir, o.shown(), res.commit, err)
		}
	}
	if err := normalizeCheckout(upper); err != nil {
		return cache.Ref{}, fmt.Errorf("checking out %s: %w", o.shown(), err)
	}
	return commitIngest(ctx, o.d, a)
}

// fetch brings res.commit into the repository: shallow by ref, then shallow by commit
// (the ref may have moved since ls-remote), then everything reachable from branches
// and tags (dumb HTTP servers cannot do shallow fetches).
func (o *gitOp) fetch(ctx context.Context, repo func(...string) ([]byte, error), res *gitResolved) error {
	var attempts [][]string
	if res.name != "" {
		attempts = append(attempts, []string{"fetch", "-q", "--depth=1", "--no-tags", "origin", res.name})
	}
	attempts = append(attempts,
		[]string{"fetch", "-q", "--depth=1", "--no-tags", "origin", res.commit},
		[]string{"fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*"},
	)
	var errs []error
	for _, args := range attempts {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := repo(args...); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := repo("cat-file", "-e", res.commit+"^{commit}"); err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: commit not fetched", strings.Join(args, " ")))
	}
	return fmt.Errorf("fetching commit %s of %s: %w", res.commit, o.shown(), errors.Join(errs...))
}

// submodules checks out the submodules as BuildKit does, shallow where possible.
func (o *gitOp) submodules(repo func(...string) ([]byte, error)) error {
	if _, err := repo("submodule", "update", "--init", "--recursive", "--depth=1"); err == nil {
		return nil
	}
	if _, err := repo("submodule", "update", "--init", "--recursive"); err != nil {
		return fmt.Errorf("updating submodules of %s: %w", o.shown(), err)
	}
	return nil
}

// git runs the git binary in dir with an environment that ignores the host's and the
// user's git configuration and never prompts, as BuildKit does.
func (o *gitOp) git(ctx context.Context, dir string, args ...string) ([]byte, error) {
	// A file:// submodule of a remote repository must not read the host's disk.
	args = append([]string{"-c", "protocol.file.allow=user", "-c", "advice.detachedHead=false"}, args...)
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"GIT_TERMINAL_PROMPT=0",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + os.DevNull,
		"HOME=" + os.DevNull,
		"LC_ALL=C",
		"GIT_SSH_COMMAND=ssh -F " + os.DevNull + " -o StrictHostKeyChecking=no",
	}
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	if sock := o.d.SSH["default"]; sock != "" {
		cmd.Env = append(cmd.Env, "SSH_AUTH_SOCK="+sock)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Helpers (git-remote-http, ssh) may hold the pipes after git is killed.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return nil, fmt.Errorf("git %s: %w", gitVerb(args), err)
		}
		return nil, fmt.Errorf("git %s: %w: %s", gitVerb(args), err, o.redact(msg))
	}
	return stdout.Bytes(), nil
}

// gitVerb names the git subcommand in args, for messages.
func gitVerb(args []string) string {
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "-c" || args[i] == "--git-dir" || args[i] == "--work-tree":
			i++
		case !strings.HasPrefix(args[i], "-"):
			return args[i]
		}
	}
	return ""
}

func (o *gitOp) tempDir() string {
	if o.d.TempDir != "" {
		return o.d.TempDir
	}
	return os.TempDir()
}

// shown is the remote as messages show it: without a password.
func (o *gitOp) shown() string {
	if strings.Contains(o.remote, "://") {
		return redactURL(o.remote)
	}
	return o.remote
}

func (o *gitOp) refShown() string {
	if o.ref == "" {
		return "HEAD"
	}
	return o.ref
}

// redact removes the remote's credentials from git's messages.
func (o *gitOp) redact(msg string) string {
	u, err := url.Parse(o.remote)
	if err != nil || u.User == nil {
		return msg
	}
	if p, ok := u.User.Password(); ok && p != "" {
		msg = strings.ReplaceAll(msg, p, redactMask)
	}
	if name := u.User.Username(); name != "" {
		msg = strings.ReplaceAll(msg, name, redactMask)
	}
	return msg
}

// moveSubdirUp replaces the content of upper with that of workTree/subdir and removes
// workTree (which lies inside upper). Every element of subdir must be a real
// directory: a symlink could point anywhere.
func moveSubdirUp(workTree, subdir, upper string) error {
	p := workTree
	for _, elem := range strings.Split(subdir, "/") {
		p = filepath.Join(p, elem)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return errors.New("no such directory in the repository")
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", strings.TrimPrefix(p, workTree+"/"))
		}
	}
	names, err := readNames(p)
	if err != nil {
		return err
	}
	checkout := filepath.Base(workTree)
	for _, n := range names {
		if n == checkout {
			// Cannot happen in practice: the name is random. Better an error than a mix.
			return fmt.Errorf("entry %s collides with the checkout dir", n)
		}
		if err := os.Rename(filepath.Join(p, n), filepath.Join(upper, n)); err != nil {
			return err
		}
	}
	return os.RemoveAll(workTree)
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// normalizeCheckout gives the checkout the modes BuildKit's does (git under umask
// 022: directories 0755, files 0644 or 0755) and root ownership, whatever this
// process's umask and user.
func normalizeCheckout(root string) error {
	gitDir := filepath.Join(root, ".git")
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, 0, 0); err != nil {
			return err
		}
		if p == gitDir {
			// git sets its own modes (read-only objects); only the tree is normalized.
			err := filepath.WalkDir(p, func(p string, _ fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				return os.Lchown(p, 0, 0)
			})
			if err != nil {
				return err
			}
			return fs.SkipDir
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			return nil
		case d.IsDir():
			return os.Chmod(p, 0o755)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if fi.Mode()&0o111 != 0 {
				mode = 0o755
			}
			return os.Chmod(p, mode)
		}
		return nil
	})
}
