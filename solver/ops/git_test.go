package ops

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/llb"
)

// testRepo is a git repository made by the test, served four ways.
type testRepo struct {
	dir     string // work tree; the repository is dir/.git
	env     []string
	commit1 string // tagged v1 (lightweight) and v2 (annotated)
	commit2 string // main
	feature string // branch feature
}

// gitIn runs git in dir with no system or user configuration.
func gitIn(t *testing.T, env []string, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *testRepo) git(t *testing.T, args ...string) string {
	t.Helper()
	return gitIn(t, r.env, r.dir, args...)
}

// commitAll writes files (path → content; "+x:" prefix makes it executable) and commits.
func (r *testRepo) commitAll(t *testing.T, msg string, files map[string]string) string {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(r.dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if d, ok := strings.CutPrefix(data, "+x:"); ok {
			data, mode = d, 0o755
		}
		if err := os.WriteFile(full, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	r.git(t, "add", "-A")
	r.git(t, "commit", "-q", "-m", msg)
	// Dumb HTTP clients read info/refs and objects/info/packs.
	r.git(t, "update-server-info")
	return r.git(t, "rev-parse", "HEAD")
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git")
	}
	home := t.TempDir()
	r := &testRepo{
		dir: filepath.Join(t.TempDir(), "repo"),
		env: []string{
			"PATH=" + os.Getenv("PATH"),
			"HOME=" + home,
			"GIT_CONFIG_NOSYSTEM=1",
			"GIT_TERMINAL_PROMPT=0",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
		},
	}
	if err := os.Mkdir(r.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r.git(t, "init", "-q", "-b", "main")
	r.commit1 = r.commitAll(t, "one", map[string]string{
		"README":         "one\n",
		"run.sh":         "+x:#!/bin/sh\n",
		"sub/inner/file": "inner one\n",
	})
	r.git(t, "tag", "v1")
	r.git(t, "tag", "-a", "-m", "annotated", "v2")
	r.git(t, "checkout", "-q", "-b", "feature")
	r.feature = r.commitAll(t, "feature", map[string]string{"FEATURE": "yes\n"})
	r.git(t, "checkout", "-q", "main")
	r.commit2 = r.commitAll(t, "two", map[string]string{"README": "two\n"})
	return r
}

// dumbHTTP serves the repository as static files.
func (r *testRepo) dumbHTTP(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.StripPrefix("/repo.git", http.FileServer(http.Dir(filepath.Join(r.dir, ".git")))))
	t.Cleanup(srv.Close)
	return srv.URL + "/repo.git"
}

// smartHTTP serves the repository through git-http-backend.
func (r *testRepo) smartHTTP(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Skipf("needs git-http-backend: %v", err)
	}
	h := &cgi.Handler{
		Path: backend,
		Env: append(r.env,
			"GIT_PROJECT_ROOT="+r.dir,
			"GIT_HTTP_EXPORT_ALL=1",
		),
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/.git"
}

func TestGitSource(t *testing.T) {
	d := remoteDeps(t)
	r := newTestRepo(t)
	remotes := map[string]string{
		"path":       r.dir,
		"file URL":   "file://" + r.dir,
		"dumb HTTP":  r.dumbHTTP(t),
		"smart HTTP": r.smartHTTP(t),
	}
	dirs := map[string]remoteEntry{
		"sub":       {Mode: fs.ModeDir | 0o755},
		"sub/inner": {Mode: fs.ModeDir | 0o755},
	}
	tree := func(readme string, extra map[string]remoteEntry) map[string]remoteEntry {
		m := map[string]remoteEntry{
			"README":         {Mode: 0o644, Content: readme},
			"run.sh":         {Mode: 0o755, Content: "#!/bin/sh\n"},
			"sub/inner/file": {Mode: 0o644, Content: "inner one\n"},
		}
		for k, v := range dirs {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name  string
		attrs map[string]string
		want  map[string]remoteEntry
	}{
		{name: "HEAD", want: tree("two\n", nil)},
		{name: "branch", attrs: map[string]string{llb.AttrGitRef: "main"}, want: tree("two\n", nil)},
		{name: "other branch", attrs: map[string]string{llb.AttrGitRef: "feature"},
			want: tree("one\n", map[string]remoteEntry{"FEATURE": {Mode: 0o644, Content: "yes\n"}})},
		{name: "full branch ref", attrs: map[string]string{llb.AttrGitRef: "refs/heads/feature"},
			want: tree("one\n", map[string]remoteEntry{"FEATURE": {Mode: 0o644, Content: "yes\n"}})},
		{name: "tag", attrs: map[string]string{llb.AttrGitRef: "v1"}, want: tree("one\n", nil)},
		{name: "annotated tag", attrs: map[string]string{llb.AttrGitRef: "v2"}, want: tree("one\n", nil)},
		{name: "commit", attrs: map[string]string{llb.AttrGitRef: r.commit1}, want: tree("one\n", nil)},
		{name: "checksum", attrs: map[string]string{llb.AttrGitRef: "main", llb.AttrGitChecksum: r.commit2[:12]}, want: tree("two\n", nil)},
		{name: "subdir", attrs: map[string]string{llb.AttrGitSubdir: "sub"}, want: map[string]remoteEntry{
			"inner":      {Mode: fs.ModeDir | 0o755},
			"inner/file": {Mode: 0o644, Content: "inner one\n"},
		}},
		{name: "nested subdir at tag", attrs: map[string]string{llb.AttrGitRef: "v1", llb.AttrGitSubdir: "/sub/inner/"}, want: map[string]remoteEntry{
			"file": {Mode: 0o644, Content: "inner one\n"},
		}},
	}
	// The group returns when its parallel subtests are done.
	t.Run("remotes", func(t *testing.T) {
		for rname, remote := range remotes {
			t.Run(rname, func(t *testing.T) {
				t.Parallel()
				for _, tc := range tests {
					t.Run(tc.name, func(t *testing.T) {
						_, ref := runSource(t, d, llb.GitScheme+remote, tc.attrs)
						got, _ := viewRemoteRef(t, d, ref)
						if diff := cmp.Diff(tc.want, got); diff != "" {
							t.Errorf("files (-want +got):\n%s", diff)
						}
					})
				}
			})
		}
	})
	if entries, err := os.ReadDir(d.TempDir); err != nil || len(entries) != 0 {
		t.Errorf("temp dir holds %v (err %v) after the checkouts, want nothing", entries, err)
	}
}

func TestGitSourceKeepGitDir(t *testing.T) {
	d := remoteDeps(t)
	r := newTestRepo(t)
	for name, remote := range map[string]string{"path": r.dir, "dumb HTTP": r.dumbHTTP(t)} {
		t.Run(name, func(t *testing.T) {
			_, ref := runSource(t, d, llb.GitScheme+remote, map[string]string{llb.AttrGitRef: "feature", llb.AttrGitKeepDir: "true"})
			root, release, err := d.Snapshots.View(t.Context(), ref.SnapshotIDs())
			if err != nil {
				t.Fatal(err)
			}
			defer release()
			env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "GIT_CONFIG_NOSYSTEM=1"}
			// The view is owned by root; so is this test (RequiresRoot).
			if got := gitIn(t, env, root, "rev-parse", "HEAD"); got != r.feature {
				t.Errorf("HEAD = %s, want %s", got, r.feature)
			}
			if got := gitIn(t, env, root, "rev-parse", "refs/heads/feature"); got != r.feature {
				t.Errorf("refs/heads/feature = %s, want %s", got, r.feature)
			}
			if got := gitIn(t, env, root, "remote", "get-url", "origin"); got != remote {
				t.Errorf("origin = %s, want %s", got, remote)
			}
			if got := gitIn(t, env, root, "status", "--porcelain"); got != "" {
				t.Errorf("work tree is not clean:\n%s", got)
			}
		})
	}
	t.Run("annotated tag", func(t *testing.T) {
		_, ref := runSource(t, d, llb.GitScheme+r.dir, map[string]string{llb.AttrGitRef: "v2", llb.AttrGitKeepDir: "true"})
		root, release, err := d.Snapshots.View(t.Context(), ref.SnapshotIDs())
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "GIT_CONFIG_NOSYSTEM=1"}
		if got := gitIn(t, env, root, "cat-file", "-t", "refs/tags/v2"); got != "tag" {
			t.Errorf("refs/tags/v2 is a %s, want the annotated tag", got)
		}
		if got := gitIn(t, env, root, "rev-parse", "HEAD"); got != r.commit1 {
			t.Errorf("HEAD = %s, want %s", got, r.commit1)
		}
	})
	t.Run("dropped by default", func(t *testing.T) {
		_, ref := runSource(t, d, llb.GitScheme+r.dir, nil)
		got, _ := viewRemoteRef(t, d, ref)
		for p := range got {
			if strings.HasPrefix(p, ".git") || strings.HasPrefix(p, ".checkout") {
				t.Errorf("result has %s", p)
			}
		}
	})
}

func TestGitSourceCacheKey(t *testing.T) {
	d := remoteDeps(t)
	r := newTestRepo(t)
	remote := r.dumbHTTP(t)
	key := func(attrs map[string]string) digest.Digest {
		t.Helper()
		k, err := resolveSource(t, d, llb.GitScheme+remote, attrs).CacheKey(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	main1 := key(map[string]string{llb.AttrGitRef: "main"})
	head1 := key(nil)
	tag1 := key(map[string]string{llb.AttrGitRef: "v1"})
	if main1 != head1 {
		t.Error("HEAD and main are one commit but have different keys")
	}
	if c := key(map[string]string{llb.AttrGitRef: r.commit1}); c != tag1 {
		t.Error("tag v1 and its commit id have different keys")
	}
	if a := key(map[string]string{llb.AttrGitRef: "v2"}); a != tag1 {
		t.Error("annotated tag v2 and the commit it tags have different keys")
	}
	if s := key(map[string]string{llb.AttrGitRef: "main", llb.AttrGitSubdir: "sub"}); s == main1 {
		t.Error("the key does not depend on the subdir")
	}
	if k := key(map[string]string{llb.AttrGitRef: "main", llb.AttrGitKeepDir: "true"}); k == main1 {
		t.Error("the key does not depend on keepgitdir")
	}

	r.commitAll(t, "three", map[string]string{"README": "three\n"})
	if main2 := key(map[string]string{llb.AttrGitRef: "main"}); main2 == main1 {
		t.Error("the key did not change when main moved")
	}
	if key(nil) == head1 {
		t.Error("the key of HEAD did not change when main moved")
	}
	if key(map[string]string{llb.AttrGitRef: "v1"}) != tag1 {
		t.Error("the key of tag v1 changed though the tag did not move")
	}

	// Exec checks out the commit CacheKey saw.
	_, ref := runSource(t, d, llb.GitScheme+remote, map[string]string{llb.AttrGitRef: "main"})
	if got, _ := viewRemoteRef(t, d, ref); got["README"].Content != "three\n" {
		t.Errorf("README = %q after main moved, want three", got["README"].Content)
	}
}

func TestGitSourceErrors(t *testing.T) {
	d := remoteDeps(t)
	r := newTestRepo(t)
	missing := filepath.Join(t.TempDir(), "no-repo")
	tests := []struct {
		name   string
		remote string
		attrs  map[string]string
		says   []string
	}{
		{name: "no such ref", remote: r.dir, attrs: map[string]string{llb.AttrGitRef: "nope"}, says: []string{r.dir, "nope", "no such ref"}},
		{name: "no such repository", remote: missing, says: []string{missing}},
		{name: "checksum mismatch", remote: r.dir, attrs: map[string]string{llb.AttrGitRef: "main", llb.AttrGitChecksum: "0000000"},
			says: []string{r.dir, r.commit2, "0000000"}},
		{name: "checksum mismatch of commit", remote: r.dir, attrs: map[string]string{llb.AttrGitRef: r.commit1, llb.AttrGitChecksum: r.commit2[:8]},
			says: []string{r.commit1, r.commit2[:8]}},
		{name: "no such subdir", remote: r.dir, attrs: map[string]string{llb.AttrGitSubdir: "nothere"}, says: []string{"nothere", r.dir, r.commit2}},
		{name: "subdir is a file", remote: r.dir, attrs: map[string]string{llb.AttrGitSubdir: "README"}, says: []string{"README", "not a directory"}},
		{name: "commit not in repository", remote: r.dir, attrs: map[string]string{llb.AttrGitRef: strings.Repeat("1", 40)}, says: []string{strings.Repeat("1", 40), r.dir}},
		{name: "password is hidden", remote: "http://alice:hunter2@127.0.0.1:1/repo.git", says: []string{"xxxxx:xxxxx@127.0.0.1:1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			op := resolveSource(t, d, llb.GitScheme+tc.remote, tc.attrs)
			_, err := op.CacheKey(t.Context(), nil)
			if err == nil {
				_, err = op.Exec(t.Context(), nil, io.Discard)
			}
			if err == nil {
				t.Fatal("succeeded, want error")
			}
			t.Logf("error: %v", err)
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "alice") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}
