// Package content is a content-addressed blob store: compressed layers, image configs,
// manifests. Blobs are written to an ingest file while hashing, checked against the
// expected size and digest, synced, and only then renamed to their final name, so a
// blob that exists is always complete.
package content

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/internal/proc"
)

// ErrNotFound is returned for a digest the store does not hold.
var ErrNotFound = errors.New("blob not found")

// Store keeps blobs under root/blobs/<alg>/<hex>.
type Store struct {
	root string
}

// Open opens (creating if needed) the store at root.
func Open(root string) (*Store, error) {
	for _, d := range []string{"blobs/sha256", "ingest"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, fmt.Errorf("opening content store: %w", err)
		}
	}
	return &Store{root: root}, nil
}

// Path is where the blob d lives (whether or not it exists yet).
func (s *Store) Path(d digest.Digest) string {
	return filepath.Join(s.root, "blobs", d.Algorithm().String(), d.Encoded())
}

// Delete removes blob d; a missing blob is not an error. The caller makes sure nothing
// refers to it any more. A reader that opened it first keeps reading it (unlink).
func (s *Store) Delete(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("blob %q: %w", d, err)
	}
	if err := os.Remove(s.Path(d)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing blob %s: %w", d, err)
	}
	return nil
}

// Size returns the size of blob d, or ErrNotFound.
func (s *Store) Size(d digest.Digest) (int64, error) {
	if err := d.Validate(); err != nil {
		return 0, fmt.Errorf("blob %q: %w", d, err)
	}
	fi, err := os.Stat(s.Path(d))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// Has reports whether blob d is in the store.
func (s *Store) Has(d digest.Digest) bool {
	_, err := s.Size(d)
	return err == nil
}

// Open returns a reader of blob d.
func (s *Store) Open(_ context.Context, d digest.Digest) (*os.File, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("blob %q: %w", d, err)
	}
	f, err := os.Open(s.Path(d))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	return f, err
}

// ReadAll returns the whole blob d; for small blobs (configs, manifests).
func (s *Store) ReadAll(ctx context.Context, d digest.Digest) ([]byte, error) {
	f, err := s.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dt, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", d, err)
	}
	if digest.FromBytes(dt) != d {
		return nil, fmt.Errorf("blob %s is corrupt: content digest differs", d)
	}
	return dt, nil
}

// Writer is an open ingest. Write to it, then Commit; always Close (a no-op after Commit).
type Writer struct {
	s        *Store
	f        *os.File
	digester digest.Digester
	size     int64
	done     bool
}

// Writer starts a new ingest.
func (s *Store) Writer(_ context.Context) (*Writer, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, "ingest"), fmt.Sprintf("%d-*", os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("starting blob ingest: %w", err)
	}
	return &Writer{s: s, f: f, digester: digest.Canonical.Digester()}, nil
}

func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.digester.Hash().Write(p[:n])
	w.size += int64(n)
	return n, err
}

// Digest is the digest of what was written so far.
func (w *Writer) Digest() digest.Digest { return w.digester.Digest() }

// Size is the number of bytes written so far.
func (w *Writer) Size() int64 { return w.size }

// Commit checks the written content against expected (either may be zero to skip that
// check), syncs it and moves it into place. Committing a blob that already exists is fine.
func (w *Writer) Commit(_ context.Context, size int64, expected digest.Digest) (digest.Digest, error) {
	defer w.Close()
	got := w.Digest()
	if size > 0 && size != w.size {
		return "", fmt.Errorf("committing blob %s: size %d, expected %d", got, w.size, size)
	}
	if expected != "" && expected != got {
		return "", fmt.Errorf("committing blob: content digest %s, expected %s", got, expected)
	}
	if err := w.f.Sync(); err != nil {
		return "", fmt.Errorf("syncing blob %s: %w", got, err)
	}
	if err := w.f.Close(); err != nil {
		return "", fmt.Errorf("closing blob %s: %w", got, err)
	}
	if err := os.Rename(w.f.Name(), w.s.Path(got)); err != nil {
		return "", fmt.Errorf("committing blob %s: %w", got, err)
	}
	w.done = true
	return got, nil
}

// Close abandons an uncommitted ingest.
func (w *Writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	return os.Remove(w.f.Name())
}

// WriteBlob copies r into the store and commits it, checking size and digest if given.
func (s *Store) WriteBlob(ctx context.Context, r io.Reader, size int64, expected digest.Digest) (digest.Digest, error) {
	if expected != "" && s.Has(expected) {
		return expected, nil
	}
	w, err := s.Writer(ctx)
	if err != nil {
		return "", err
	}
	defer w.Close()
	if _, err := io.Copy(w, ContextReader(ctx, r)); err != nil {
		return "", fmt.Errorf("writing blob: %w", err)
	}
	return w.Commit(ctx, size, expected)
}

// WriteBytes stores dt and returns its digest.
func (s *Store) WriteBytes(ctx context.Context, dt []byte) (digest.Digest, error) {
	d := digest.FromBytes(dt)
	if s.Has(d) {
		return d, nil
	}
	w, err := s.Writer(ctx)
	if err != nil {
		return "", err
	}
	defer w.Close()
	if _, err := w.Write(dt); err != nil {
		return "", fmt.Errorf("writing blob %s: %w", d, err)
	}
	return w.Commit(ctx, int64(len(dt)), d)
}

// CleanIngests removes ingest files left by processes that no longer run.
func (s *Store) CleanIngests() error {
	ents, err := os.ReadDir(filepath.Join(s.root, "ingest"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if pid := proc.Owner(e.Name()); pid != 0 && proc.Alive(pid) {
			continue
		}
		os.Remove(filepath.Join(s.root, "ingest", e.Name()))
	}
	return nil
}

// ContextReader returns a reader of r that fails with ctx's error once ctx is done, so
// long copies stop on cancellation. It hides r's WriterTo, so io.CopyBuffer uses the
// buffer it is given.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return &ctxReader{ctx: ctx, r: r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
