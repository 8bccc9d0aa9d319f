// Package ops implements the solver's ops for each llb op kind: image and local sources,
// exec (RUN in a sandbox over an overlay snapshot) and file (COPY, mkdir). It is where the
// solver meets the worker, the snapshotter, the content store and the registry.
package ops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/singleflight"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
	"github.com/builderdev/builder/cache/snapshot"
	"github.com/builderdev/builder/internal/registry"
	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
	"github.com/builderdev/builder/worker"
	"github.com/builderdev/builder/worker/fscopy"
)

// ImageSource is what the image source op needs of a registry client.
type ImageSource interface {
	Resolve(ctx context.Context, ref string) (*registry.Resolved, error)
	FetchLayer(ctx context.Context, ref string, desc v1.Descriptor) error
}

// SecretStore gives RUN --mount=type=secret its content (builder build --secret).
type SecretStore interface {
	// GetSecret returns the secret's bytes; an unknown id is an error wrapping
	// ErrSecretNotFound.
	GetSecret(ctx context.Context, id string) ([]byte, error)
}

// ErrSecretNotFound is wrapped by SecretStore errors for ids the build was not given.
var ErrSecretNotFound = errors.New("secret not found")

// Deps are the parts the ops run on.
type Deps struct {
	Content   *content.Store
	Snapshots *snapshot.Snapshotter
	Executor  worker.Executor
	Images    ImageSource
	// Locals maps local source names (llb.Local) to host directories.
	Locals map[string]string
	// Secrets serves secret mounts; nil means no secrets were given.
	Secrets SecretStore
	// SSH maps --ssh ids to agent socket paths on the host ("default" for --ssh default).
	SSH map[string]string
	// CacheMounts is the directory that holds RUN --mount=type=cache contents across
	// builds (root/cache-mounts).
	CacheMounts string
	// TempDir holds short-lived files of a build (secret files, downloads), on the same
	// filesystem as the store.
	TempDir string
	// HTTP downloads ADD URLs; nil means http.DefaultClient.
	HTTP *http.Client
	// StatCache lets context checksums skip reading files whose stat is unchanged
	// (a fscopy.FileStatCache keeps it across builds); nil reads every file.
	StatCache fscopy.StatCache
	// Blobs fetches layer blobs that are not in the content store: base-image layers
	// and layers of imported cache records stay remote until an op reads them. nil
	// means every layer an op reads must already be local.
	Blobs BlobFetcher

	// flight makes concurrent ops realize each layer once; Resolver sets it.
	flight *singleflight.Group
}

// BlobFetcher puts a layer's compressed blob into the content store (a no-op when it
// is there already).
type BlobFetcher interface {
	FetchBlob(ctx context.Context, l cache.Layer) error
}

// Resolver returns the solver.ResolveFunc that binds vertices to ops running on d.
func Resolver(d Deps) solver.ResolveFunc {
	if d.flight == nil {
		d.flight = &singleflight.Group{}
	}
	return func(v *llb.Vertex) (solver.Op, error) {
		switch op := v.Op().(type) {
		case *llb.SourceOp:
			switch {
			case strings.HasPrefix(op.Identifier, llb.ImageScheme):
				return &imageOp{d: d, ref: strings.TrimPrefix(op.Identifier, llb.ImageScheme)}, nil
			case strings.HasPrefix(op.Identifier, llb.LocalScheme):
				name := strings.TrimPrefix(op.Identifier, llb.LocalScheme)
				dir, ok := d.Locals[name]
				if !ok {
					return nil, fmt.Errorf("local source %q was not provided", name)
				}
				return newLocalOp(dir, op.Attrs)
			case strings.HasPrefix(op.Identifier, llb.HTTPScheme), strings.HasPrefix(op.Identifier, llb.HTTPSScheme):
				return newHTTPOp(d, op)
			case strings.HasPrefix(op.Identifier, llb.GitScheme):
				return newGitOp(d, op)
			case strings.HasPrefix(op.Identifier, llb.OCILayoutScheme):
				return newOCILayoutOp(d, op)
			}
			return nil, fmt.Errorf("unsupported source %q", op.Identifier)
		case *llb.ExecOp:
			return &execOp{d: d, op: op, hasher: fscopy.Hasher{StatCache: d.StatCache}}, nil
		case *llb.FileOp:
			return &fileOp{d: d, op: op, hasher: fscopy.Hasher{StatCache: d.StatCache}}, nil
		}
		return nil, fmt.Errorf("unsupported op %T", v.Op())
	}
}

// inputRef returns input i's result, or the empty filesystem for llb.NoInput.
func inputRef(inputs []solver.Result, i int) solver.Result {
	if i == llb.NoInput {
		return solver.Result{}
	}
	return inputs[i]
}
