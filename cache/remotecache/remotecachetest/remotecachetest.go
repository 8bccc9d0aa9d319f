// Package remotecachetest has test helpers for code that exports and imports caches: a
// Remote/Pusher over go-containerregistry and an in-process registry that counts blob
// downloads. Only tests import it.
package remotecachetest

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache/content"
)

// GGCRRemote is a minimal Remote/Pusher over go-containerregistry's remote package,
// counting blob downloads.
type GGCRRemote struct {
	CS        *content.Store
	Downloads atomic.Int64
}

// Fetch implements remotecache.Remote.
func (r *GGCRRemote) Fetch(ctx context.Context, ref string) (v1.Manifest, []byte, error) {
	n, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return v1.Manifest{}, nil, err
	}
	img, err := remote.Image(n, remote.WithContext(ctx))
	if err != nil {
		return v1.Manifest{}, nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return v1.Manifest{}, nil, err
	}
	cfg, err := img.RawConfigFile()
	return *m, cfg, err
}

// FetchLayer implements remotecache.Remote, counting downloads.
func (r *GGCRRemote) FetchLayer(ctx context.Context, ref string, desc v1.Descriptor) error {
	n, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	l, err := remote.Layer(n.Context().Digest(desc.Digest.String()), remote.WithContext(ctx))
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	r.Downloads.Add(1)
	_, err = r.CS.WriteBlob(ctx, rc, desc.Size, digest.Digest(desc.Digest.String()))
	return err
}

// Push implements remotecache.Pusher.
func (r *GGCRRemote) Push(ctx context.Context, ref string, img v1.Image) error {
	n, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(n, img, remote.WithContext(ctx))
}

// CountingRegistry is an in-process registry that counts blob GETs.
func CountingRegistry(t testing.TB) (string, *atomic.Int64) {
	var blobGets atomic.Int64
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			blobGets.Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), &blobGets
}
