package content

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

func TestWriteBlobVerifies(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dt := []byte("layer bytes")
	want := digest.FromBytes(dt)
	for _, tc := range []struct {
		name     string
		size     int64
		expected digest.Digest
		err      string
	}{
		{"wrong digest", 0, digest.FromString("other"), "expected"},
		{"wrong size", 3, "", "size"},
		{"ok", int64(len(dt)), want, ""},
		{"again is fine", int64(len(dt)), want, ""},
	} {
		got, err := s.WriteBlob(ctx, bytes.NewReader(dt), tc.size, tc.expected)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.err)
			}
			if s.Has(want) {
				t.Errorf("%s: a rejected blob is in the store", tc.name)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%s: = %s, %v; want %s", tc.name, got, err, want)
		}
	}
	back, err := s.ReadAll(ctx, want)
	if err != nil || !bytes.Equal(back, dt) {
		t.Errorf("ReadAll = %q, %v", back, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.root, "ingest")); len(ents) != 0 {
		t.Errorf("%d ingest files left behind", len(ents))
	}
}

func TestMissingAndCorruptBlobs(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _ := Open(t.TempDir())
	if _, err := s.Open(ctx, digest.FromString("nope")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.Open(ctx, "sha256:../../etc/passwd"); err == nil {
		t.Error("Open accepted an invalid digest")
	}
	d, err := s.WriteBytes(ctx, []byte("config"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path(d), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadAll(ctx, d); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("ReadAll of a tampered blob = %v, want corrupt", err)
	}
}

func TestCleanIngestsKeepsLiveProcesses(t *testing.T) {
	t.Parallel()
	s, _ := Open(t.TempDir())
	w, err := s.Writer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	dead := filepath.Join(s.root, "ingest", "999999999-abc")
	if err := os.WriteFile(dead, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.CleanIngests(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Error("ingest of a dead process survived")
	}
	if _, err := os.Stat(w.f.Name()); err != nil {
		t.Errorf("ingest of this (live) process removed: %v", err)
	}
}

func TestDelete(t *testing.T) {
	ctx := t.Context()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.WriteBytes(ctx, []byte("blob"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(d); err != nil || s.Has(d) {
		t.Fatalf("Delete = %v, Has after = %v", err, s.Has(d))
	}
	if err := s.Delete(d); err != nil {
		t.Fatalf("deleting a missing blob: %v", err)
	}
	if err := s.Delete("sha256:../../x"); err == nil {
		t.Fatal("Delete accepted an invalid digest")
	}
}
