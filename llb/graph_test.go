package llb

import (
	"encoding/json"
	"strings"
	"testing"
)

func build(t testing.TB, cmd string, meta Meta) *Vertex {
	t.Helper()
	img, err := Image("docker.io/library/busybox:latest@sha256:"+strings.Repeat("b", 64), Meta{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := Local("context", Meta{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := img.Copy(ctx, CopyAction{Src: []string{"a.txt"}, Dest: "/app/"}, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	s, err = s.Run(ExecOp{Args: []string{"/bin/sh", "-c", cmd}, Cwd: "/app", Network: NetworkHost}, meta)
	if err != nil {
		t.Fatal(err)
	}
	return s.Vertex()
}

func TestDigestIgnoresMetaAndTracksContent(t *testing.T) {
	t.Parallel()
	a := build(t, "make", Meta{Description: "one", Location: &SourceLocation{File: "Dockerfile", StartLine: 3}})
	b := build(t, "make", Meta{Description: "two"})
	c := build(t, "make test", Meta{})
	if a.Digest() != b.Digest() {
		t.Errorf("meta changed the digest: %s vs %s", a.Digest(), b.Digest())
	}
	if a.Digest() == c.Digest() {
		t.Errorf("different commands share digest %s", a.Digest())
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	t.Parallel()
	out := build(t, "make", Meta{Description: "[2/2] RUN make", Location: &SourceLocation{File: "Dockerfile", StartLine: 4, EndLine: 4}})
	def, err := Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(def.Vertices); got != 4 {
		t.Fatalf("definition has %d vertices, want 4 (image, local, copy, exec)", got)
	}
	if def.Vertices[len(def.Vertices)-1].Digest != out.Digest() || def.Output != out.Digest() {
		t.Errorf("output vertex is not last")
	}
	dt, err := json.Marshal(def)
	if err != nil {
		t.Fatal(err)
	}
	var back Definition
	if err := json.Unmarshal(dt, &back); err != nil {
		t.Fatal(err)
	}
	v, err := back.Graph()
	if err != nil {
		t.Fatal(err)
	}
	if v.Digest() != out.Digest() {
		t.Errorf("round trip digest %s, want %s", v.Digest(), out.Digest())
	}
	if v.Meta().Location == nil || v.Meta().Location.StartLine != 4 {
		t.Errorf("round trip lost the source location: %+v", v.Meta())
	}
}

func TestGraphRejectsTampering(t *testing.T) {
	t.Parallel()
	def, err := Marshal(build(t, "make", Meta{}))
	if err != nil {
		t.Fatal(err)
	}
	dt, _ := json.Marshal(def)
	bad := strings.Replace(string(dt), `"make"`, `"rm -rf /"`, 1)
	var back Definition
	if err := json.Unmarshal([]byte(bad), &back); err != nil {
		t.Fatal(err)
	}
	if _, err := back.Graph(); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("tampered definition accepted: %v", err)
	}
}

func TestNewVertexChecksInputs(t *testing.T) {
	t.Parallel()
	for name, op := range map[string]Op{
		"exec root out of range":  &ExecOp{Args: []string{"x"}, Root: 2},
		"exec without args":       &ExecOp{Root: NoInput},
		"copy without source":     &FileOp{Base: NoInput, Actions: []FileAction{{Copy: &CopyAction{From: NoInput}}}},
		"action with two kinds":   &FileOp{Base: NoInput, Actions: []FileAction{{Copy: &CopyAction{}, Mkdir: &MkdirAction{}}}},
		"source without identity": &SourceOp{},
	} {
		if _, err := NewVertex(op, nil, Meta{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzDefinitionDecode(f *testing.F) {
	def, err := Marshal(build(f, "make", Meta{}))
	if err != nil {
		f.Fatal(err)
	}
	dt, _ := json.Marshal(def)
	f.Add(dt)
	f.Add([]byte(`{"version":1,"vertices":[],"output":""}`))
	f.Fuzz(func(t *testing.T, dt []byte) {
		var d Definition
		if json.Unmarshal(dt, &d) != nil {
			return
		}
		v, err := d.Graph()
		if err == nil && v == nil {
			t.Fatal("nil vertex without error")
		}
	})
}

func TestWithEnv(t *testing.T) {
	env := []string{"A=1", "PATH=/bin", "B=2"}
	got := WithEnv(env, "PATH=/usr/bin")
	want := []string{"A=1", "B=2", "PATH=/usr/bin"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("WithEnv = %v, want %v", got, want)
	}
	if env[1] != "PATH=/bin" {
		t.Fatal("WithEnv changed its input")
	}
	if got := WithEnv(nil, "X="); len(got) != 1 || got[0] != "X=" {
		t.Fatalf("WithEnv(nil) = %v", got)
	}
}
