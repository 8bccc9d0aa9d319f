//go:build linux

package e2e

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const imagesDockerfile = `FROM {{BASE}}
RUN echo built > /built.txt && mkdir -p /app
COPY greeting.txt /app/
ENV WHO=world
CMD ["sh", "-c", "cat /app/greeting.txt; echo $WHO; exit 3"]
`

// exitCode returns the exit status of a finished builder run, -1 if it did not run.
func exitCode(r result) int {
	var xe *exec.ExitError
	if errors.As(r.err, &xe) {
		return xe.ExitCode()
	}
	if r.err == nil {
		return 0
	}
	return -1
}

func shortID(t *testing.T, root, ref string) string {
	t.Helper()
	out := mustBuilder(t, root, "inspect", "-f", "{{.Id}}", ref).stdout
	id := strings.TrimSpace(out)
	if !strings.HasPrefix(id, "sha256:") || len(id) != 71 {
		t.Fatalf("inspect -f {{.Id}} %s = %q", ref, out)
	}
	return id[7:19]
}

func TestImageStoreCommands(t *testing.T) {
	root := newRoot(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": imagesDockerfile, "greeting.txt": "hello\n"})
	mustBuilder(t, root, "build", "-t", "shop/app:1", ctxDir)
	id := shortID(t, root, "shop/app:1")

	// images: one row, docker's columns.
	out := mustBuilder(t, root, "images").stdout
	if !regexp.MustCompile(`(?m)^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^shop/app\s+1\s+`+id+`\s+.+ago\s+\S+B$`).MatchString(out) {
		t.Errorf("images:\n%s", out)
	}

	// inspect: config and manifest.
	var docs []struct {
		ID       string `json:"Id"`
		RepoTags []string
		Config   struct {
			Env []string
			Cmd []string
		}
		RootFS   struct{ Layers []string }
		Manifest struct {
			Layers []struct{ Digest string }
		}
	}
	if err := json.Unmarshal([]byte(mustBuilder(t, root, "inspect", "shop/app:1").stdout), &docs); err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 || !slices.Contains(docs[0].Config.Env, "WHO=world") || len(docs[0].Manifest.Layers) != len(docs[0].RootFS.Layers) ||
		len(docs[0].RootFS.Layers) < 3 || !slices.Equal(docs[0].RepoTags, []string{"shop/app:1"}) {
		t.Errorf("inspect = %+v", docs)
	}

	// history: newest first, the image id on top, the RUN step listed.
	out = mustBuilder(t, root, "history", "--no-trunc", "shop/app:1").stdout
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 4 || !strings.HasPrefix(lines[1], "sha256:") || !strings.Contains(out, "echo built > /built.txt") {
		t.Errorf("history:\n%s", out)
	}

	// tag + rmi: untag while another name is left, refuse by id across repositories.
	mustBuilder(t, root, "tag", "shop/app:1", "other/app:latest")
	r := builder(t, root, "rmi", id)
	if r.err == nil || !strings.Contains(r.stderr, "must be forced") {
		t.Errorf("rmi by id with two repositories: %v\n%s", r.err, r.combined())
	}
	if out := mustBuilder(t, root, "rmi", "other/app").stdout; out != "Untagged: other/app:latest\n" {
		t.Errorf("rmi other/app = %q", out)
	}

	// run: output on the terminal, exit code passed through.
	r = builder(t, root, "run", "--rm", "shop/app:1")
	if exitCode(r) != 3 || r.stdout != "hello\nworld\n" {
		t.Errorf("run: exit %d (%v), stdout %q, stderr %q; want exit 3 and the greeting", exitCode(r), r.err, r.stdout, r.stderr)
	}
	r = builder(t, root, "run", "-e", "WHO=you", "-w", "/app", "--network", "none", "shop/app:1", "sh", "-c", "cat built.txt 2>/dev/null; pwd; echo $WHO; cat /built.txt")
	if exitCode(r) != 0 || r.stdout != "/app\nyou\nbuilt\n" {
		t.Errorf("run with a command: exit %d, stdout %q, stderr %q", exitCode(r), r.stdout, r.stderr)
	}

	// save → skopeo reads it, load into a fresh root keeps the id; the loaded image runs.
	archive := filepath.Join(t.TempDir(), "app.tar")
	mustBuilder(t, root, "save", "-o", archive, "shop/app:1")
	dt, err := exec.Command("skopeo", "inspect", "docker-archive:"+archive).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, dt)
	}
	var info struct{ Layers []string }
	if err := json.Unmarshal(dt, &info); err != nil || len(info.Layers) != len(docs[0].RootFS.Layers) {
		t.Errorf("skopeo inspect: %v, %d layers, want %d", err, len(info.Layers), len(docs[0].RootFS.Layers))
	}
	root2 := newRoot(t)
	if out := mustBuilder(t, root2, "load", "-i", archive).stdout; out != "Loaded image: shop/app:1\n" {
		t.Errorf("load = %q", out)
	}
	if got := shortID(t, root2, "shop/app:1"); got != id {
		t.Errorf("loaded id %s, want %s", got, id)
	}
	if r := builder(t, root2, "run", "shop/app:1"); exitCode(r) != 3 || r.stdout != "hello\nworld\n" {
		t.Errorf("run of the loaded image: exit %d, stdout %q, stderr %q", exitCode(r), r.stdout, r.stderr)
	}

	// An OCI archive written by skopeo loads under the name it carries.
	oci := filepath.Join(t.TempDir(), "oci.tar")
	if dt, err := exec.Command("skopeo", "copy", "docker-archive:"+archive, "oci-archive:"+oci+":example.com/copied/app:7").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, dt)
	}
	if out := mustBuilder(t, root2, "load", "-i", oci).stdout; out != "Loaded image: example.com/copied/app:7\n" {
		t.Errorf("load of the OCI archive = %q", out)
	}
	if r := builder(t, root2, "run", "example.com/copied/app:7", "cat", "/built.txt"); exitCode(r) != 0 || r.stdout != "built\n" {
		t.Errorf("run of the OCI-loaded image: exit %d, stdout %q, stderr %q", exitCode(r), r.stdout, r.stderr)
	}

	// A docker archive in the legacy layout (plain layer tars behind symlinks, as
	// skopeo and older docker write it) loads too; its layers are verified and shared.
	legacy := filepath.Join(t.TempDir(), "legacy.tar")
	if dt, err := exec.Command("skopeo", "copy", "oci-archive:"+oci, "docker-archive:"+legacy+":legacy/app:1").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, dt)
	}
	if out := mustBuilder(t, root2, "load", "-i", legacy).stdout; out != "Loaded image: legacy/app:1\n" {
		t.Errorf("load of the legacy archive = %q", out)
	}
	if r := builder(t, root2, "run", "legacy/app:1", "cat", "/app/greeting.txt"); exitCode(r) != 0 || r.stdout != "hello\n" {
		t.Errorf("run of the legacy-loaded image: exit %d, stdout %q, stderr %q", exitCode(r), r.stdout, r.stderr)
	}

	// export: the flattened filesystem.
	fsTar := filepath.Join(t.TempDir(), "fs.tar")
	mustBuilder(t, root, "export", "-o", fsTar, "shop/app:1")
	files := readTar(t, fsTar)
	if files["built.txt"] != "built\n" || files["app/greeting.txt"] != "hello\n" || files["bin/busybox"] == "" {
		t.Errorf("export lacks built.txt, app/greeting.txt or bin/busybox: %d entries", len(files))
	}

	// import of the exported tar, then run it with a --change'd command.
	out = mustBuilder(t, root2, "import", "--change", `CMD ["cat", "/app/greeting.txt"]`, fsTar, "flat:1").stdout
	if !strings.HasPrefix(out, "sha256:") {
		t.Errorf("import printed %q", out)
	}
	if r := builder(t, root2, "run", "flat:1"); exitCode(r) != 0 || r.stdout != "hello\n" {
		t.Errorf("run of the imported image: exit %d, stdout %q, stderr %q", exitCode(r), r.stdout, r.stderr)
	}

	// du: the total is what du(1) counts for the root.
	checkDu(t, root2)

	// rmi of the last name deletes the image; the build cache keeps its layers, so a
	// rebuild is fully cached and works.
	out = mustBuilder(t, root, "rmi", "shop/app:1").stdout
	if !strings.Contains(out, "Untagged: shop/app:1\nDeleted: sha256:"+id) {
		t.Errorf("rmi of the last name = %q", out)
	}
	if out := mustBuilder(t, root, "images", "-q").stdout; out != "" {
		t.Errorf("images after rmi = %q", out)
	}
	mustBuilder(t, root, "build", "-t", "shop/app:1", ctxDir)
	if r := builder(t, root, "run", "shop/app:1"); exitCode(r) != 3 {
		t.Errorf("run after rmi and rebuild: exit %d, %s", exitCode(r), r.combined())
	}
	checkDu(t, root)

	// In the fresh root nothing else uses the loaded layers: deleting every image
	// leaves no blobs and no snapshots.
	for _, ref := range []string{"shop/app:1", "example.com/copied/app:7", "legacy/app:1", "flat:1"} {
		mustBuilder(t, root2, "rmi", ref)
	}
	if n := countFiles(t, filepath.Join(root2, "content")); n != 0 {
		t.Errorf("%d content files left after removing every image", n)
	}
	if ents, _ := os.ReadDir(filepath.Join(root2, "snapshots", "layers")); len(ents) != 0 {
		t.Errorf("%d snapshots left after removing every image", len(ents))
	}
}

// checkDu compares builder du's total with du(1) and checks the areas add up.
func checkDu(t *testing.T, root string) {
	t.Helper()
	out := mustBuilder(t, root, "du", "--bytes").stdout
	sizes := map[string]int64{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(l), -1)
		var n int64
		var err error
		switch {
		case f[0] == "Total" && len(f) >= 2:
			n, err = strconv.ParseInt(f[1], 10, 64)
		case len(f) >= 3:
			n, err = strconv.ParseInt(f[2], 10, 64)
		default:
			t.Fatalf("du line %q", l)
		}
		if err != nil {
			t.Fatalf("du line %q: %v", l, err)
		}
		sizes[f[0]] = n
	}
	var sum int64
	for k, n := range sizes {
		if k != "Total" {
			sum += n
		}
	}
	if sizes["Content blobs"] <= 0 || sizes["Snapshots"] <= 0 || sum != sizes["Total"] {
		t.Errorf("du areas %v do not add up to a positive total", sizes)
	}
	dt, err := exec.Command("du", "-sxB1", root).Output()
	if err != nil {
		t.Fatal(err)
	}
	want, err := strconv.ParseInt(strings.Fields(string(dt))[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if sizes["Total"] != want {
		t.Errorf("builder du total %d, du(1) says %d\n%s", sizes["Total"], want, out)
	}
}

// readTar returns the regular files of a tar (name → content) and "" for other entries.
func readTar(t *testing.T, p string) map[string]string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(strings.TrimPrefix(hdr.Name, "./"), "/")
		if hdr.Typeflag == tar.TypeReg {
			dt, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[name] = string(dt)
		} else {
			out[name] = ""
		}
	}
}
