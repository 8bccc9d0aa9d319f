package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/internal/testutil"
)

// builderCmd runs the builder command line in-process with the store at root.
func builderCmd(t *testing.T, root string, stdin io.Reader, args ...string) (string, error) {
	t.Helper()
	cmd := New()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	if stdin != nil {
		cmd.SetIn(stdin)
	}
	cmd.SetArgs(append([]string{"--root", root}, args...))
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}

func mustCmd(t *testing.T, root string, stdin io.Reader, args ...string) string {
	t.Helper()
	out, err := builderCmd(t, root, stdin, args...)
	if err != nil {
		t.Fatalf("builder %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// rootfsTar is a small root filesystem tar: a file, a dir and a symlink.
func rootfsTar(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	cfg := v1.Config{Entrypoint: []string{"/ep"}, Cmd: []string{"default"}}
	for _, tc := range []struct {
		name   string
		cfg    v1.Config
		args   []string
		ep     string
		epSet  bool
		want   []string
		hasErr bool
	}{
		{name: "image default", cfg: cfg, want: []string{"/ep", "default"}},
		{name: "args replace cmd", cfg: cfg, args: []string{"a", "b"}, want: []string{"/ep", "a", "b"}},
		{name: "entrypoint drops cmd", cfg: cfg, ep: "/other", epSet: true, want: []string{"/other"}},
		{name: "entrypoint and args", cfg: cfg, ep: "/other", epSet: true, args: []string{"x"}, want: []string{"/other", "x"}},
		{name: "empty entrypoint clears it", cfg: cfg, epSet: true, args: []string{"sh"}, want: []string{"sh"}},
		{name: "nothing to run", cfg: v1.Config{}, hasErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := commandLine(tc.cfg, tc.args, tc.ep, tc.epSet)
			if (err != nil) != tc.hasErr {
				t.Fatalf("err = %v, want error %v", err, tc.hasErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("argv (-want +got):\n%s", diff)
			}
		})
	}
}

func TestImportChanges(t *testing.T) {
	t.Parallel()
	cf, err := importConfig([]string{
		`CMD ["echo", "hi"]`,
		`ENTRYPOINT /bin/app --flag`,
		`ENV A=1 B="two words"`,
		`ENV A=3`,
		`WORKDIR /srv`,
		`USER app:app`,
		`EXPOSE 80 53/udp`,
		`LABEL org.example.k=v`,
	}, "linux/arm64/v8")
	if err != nil {
		t.Fatal(err)
	}
	want := v1.Config{
		Cmd:          []string{"echo", "hi"},
		Entrypoint:   []string{"/bin/sh", "-c", "/bin/app --flag"},
		Env:          []string{"B=two words", "A=3"},
		WorkingDir:   "/srv",
		User:         "app:app",
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "53/udp": {}},
		Labels:       map[string]string{"org.example.k": "v"},
	}
	if diff := cmp.Diff(want, cf.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if cf.Architecture != "arm64" || cf.Variant != "v8" || cf.OS != "linux" {
		t.Errorf("platform = %s/%s/%s", cf.OS, cf.Architecture, cf.Variant)
	}
	for _, bad := range []string{"RUN echo", "FROM x", "CMD a\nCMD b"} {
		if _, err := importConfig([]string{bad}, ""); err == nil {
			t.Errorf("--change %q accepted", bad)
		}
	}
}

func TestWriteFormatted(t *testing.T) {
	t.Parallel()
	rows := []any{imageRow{Repository: "app", Tag: "v1", ID: "0123456789ab", Size: "1MB"}}
	for _, tc := range []struct{ format, want string }{
		{"{{.Repository}}:{{.Tag}}", "app:v1\n"},
		{`{{.ID}}\t{{upper .Repository}}`, "0123456789ab\tAPP\n"},
		{"table {{.Repository}}\t{{.Size}}", "REPOSITORY   SIZE\napp          1MB\n"},
		{"json", `{"Repository":"app","Tag":"v1","ID":"0123456789ab","Digest":"","CreatedAt":"","CreatedSince":"","Size":"1MB"}` + "\n"},
		{"{{json .Tag}}", "\"v1\"\n"},
	} {
		var b bytes.Buffer
		if err := writeFormatted(&b, tc.format, imageHeaders, rows); err != nil {
			t.Fatalf("%q: %v", tc.format, err)
		}
		if b.String() != tc.want {
			t.Errorf("format %q = %q, want %q", tc.format, b.String(), tc.want)
		}
	}
	if err := writeFormatted(io.Discard, "{{.Nope", imageHeaders, rows); err == nil {
		t.Error("bad template accepted")
	}
}

func TestStoreLayer(t *testing.T) {
	t.Parallel()
	plain := rootfsTar(t, map[string]string{"a": "a"})
	diffID := digest.FromBytes(plain)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain)
	zw.Close()
	cs := testutil.ContentStore(t)

	l, err := storeLayer(t.Context(), cs, bytes.NewReader(gz.Bytes()), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := cache.Layer{DiffID: diffID, Digest: digest.FromBytes(gz.Bytes()), Size: int64(gz.Len()), MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"}
	if diff := cmp.Diff(want, l); diff != "" {
		t.Errorf("gzip layer stored as is (-want +got):\n%s", diff)
	}
	// A plain tar is compressed; with the gzip blob known for its diff id it is shared.
	l2, err := storeLayer(t.Context(), cs, bytes.NewReader(plain), map[digest.Digest]cache.Layer{diffID: l})
	if err != nil {
		t.Fatal(err)
	}
	if l2 != l {
		t.Errorf("known plain layer = %+v, want the stored %+v", l2, l)
	}
	l3, err := storeLayer(t.Context(), cs, bytes.NewReader(plain), nil)
	if err != nil {
		t.Fatal(err)
	}
	if l3.DiffID != diffID || l3.Digest == l.Digest || !cs.Has(l3.Digest) {
		t.Errorf("plain layer = %+v: want diff id %s, a new gzip blob in the store", l3, diffID)
	}
}

// TestImageCommands drives import, tag, images, inspect, history, save, load, export
// and rmi on real stores.
func TestImageCommands(t *testing.T) {
	testutil.RequiresRoot(t) // openStore prepares the sandbox state dir
	root := t.TempDir()
	tmp := t.TempDir()
	rootfs := filepath.Join(tmp, "rootfs.tar")
	if err := os.WriteFile(rootfs, rootfsTar(t, map[string]string{"etc/hello": "hi\n", "bin/x": "x"}), 0o644); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(mustCmd(t, root, nil, "import", "-c", `CMD ["/bin/x"]`, rootfs, "app:v1"))
	if !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("import printed %q, want an image id", id)
	}
	short := id[7:19]
	mustCmd(t, root, nil, "tag", "app:v1", "example.com/team/app:v2")
	mustCmd(t, root, nil, "tag", short, "app:v3")

	out := mustCmd(t, root, nil, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
	want := "app:v1 " + short + "\napp:v3 " + short + "\nexample.com/team/app:v2 " + short + "\n"
	if out != want {
		t.Errorf("images = %q, want %q", out, want)
	}
	if out := mustCmd(t, root, nil, "images", "-q", "app"); out != short+"\n"+short+"\n" {
		t.Errorf("images -q app = %q", out)
	}

	var docs []map[string]any
	if err := json.Unmarshal([]byte(mustCmd(t, root, nil, "inspect", "app:v1")), &docs); err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 || docs[0]["Id"] != id || docs[0]["Manifest"] == nil {
		t.Fatalf("inspect = %v", docs)
	}
	if diff := cmp.Diff([]any{"app:v1", "app:v3", "example.com/team/app:v2"}, docs[0]["RepoTags"]); diff != "" {
		t.Errorf("RepoTags (-want +got):\n%s", diff)
	}
	if out := mustCmd(t, root, nil, "inspect", "-f", "{{.Config.Cmd}} {{.Os}}", short); out != "[/bin/x] linux\n" {
		t.Errorf("inspect -f = %q", out)
	}
	if _, err := builderCmd(t, root, nil, "inspect", "nope"); err == nil {
		t.Error("inspect of an unknown image succeeded")
	}
	if out := mustCmd(t, root, nil, "history", "-q", "app:v1"); out != short+"\n" {
		t.Errorf("history -q = %q", out)
	}

	// save → load into a fresh root keeps the id and names.
	archive := filepath.Join(tmp, "save.tar")
	mustCmd(t, root, nil, "save", "-o", archive, "app:v1", "example.com/team/app:v2")
	root2 := t.TempDir()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out = mustCmd(t, root2, f, "load")
	if !strings.Contains(out, "Loaded image: app:v1") || !strings.Contains(out, "Loaded image: example.com/team/app:v2") {
		t.Errorf("load printed %q", out)
	}
	if out := mustCmd(t, root2, nil, "images", "-q", "--no-trunc"); out != id+"\n"+id+"\n" {
		t.Errorf("loaded ids = %q, want %s twice", out, id)
	}

	// export writes the flattened filesystem.
	exported := filepath.Join(tmp, "fs.tar")
	mustCmd(t, root2, nil, "export", "-o", exported, "app:v1")
	names := tarNames(t, exported)
	if !slices.Contains(names, "etc/hello") || !slices.Contains(names, "bin/x") {
		t.Errorf("export has %v", names)
	}

	// rmi: by id refuses (two repositories), names untag, the last one deletes.
	if _, err := builderCmd(t, root, nil, "rmi", short); err == nil || !strings.Contains(err.Error(), "must be forced") {
		t.Errorf("rmi by id = %v, want a conflict", err)
	}
	if out := mustCmd(t, root, nil, "rmi", "app:v1", "app:v3"); out != "Untagged: app:v1\nUntagged: app:v3\n" {
		t.Errorf("rmi of two of three names = %q", out)
	}
	out = mustCmd(t, root, nil, "rmi", "example.com/team/app:v2")
	if out != "Untagged: example.com/team/app:v2\nDeleted: "+id+"\n" {
		t.Errorf("rmi of the last name = %q", out)
	}
	blobs, err := os.ReadDir(filepath.Join(root, "content", "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	if len(blobs) != 0 {
		t.Errorf("%d blobs left after deleting the only image", len(blobs))
	}
}

func tarNames(t *testing.T, p string) []string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, strings.TrimPrefix(hdr.Name, "./"))
	}
}
