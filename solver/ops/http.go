package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/snapshot"
	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
	"github.com/builderdev/builder/worker/diff"
)

// defaultHTTPFilename names a download whose URL and headers give no usable name
// (BuildKit's choice).
const defaultHTTPFilename = "download"

// httpOp downloads one URL into a filesystem holding just that file, the way BuildKit's
// http source does: ADD then copies from it.
type httpOp struct {
	d        Deps
	url      string
	checksum digest.Digest // "" when not pinned
	filename string        // from the attribute; "" derives it from the response or URL
	perm     os.FileMode

	mu sync.Mutex
	dl *download // fetched by CacheKey, consumed by Exec
}

// download is a fetched URL waiting in a temp file.
type download struct {
	path     string
	digest   digest.Digest
	filename string
	modTime  time.Time // zero without a usable Last-Modified
}

func newHTTPOp(d Deps, op *llb.SourceOp) (solver.Op, error) {
	o := &httpOp{d: d, url: op.Identifier, filename: op.Attrs[llb.AttrHTTPFilename], perm: 0o600}
	if _, err := url.Parse(o.url); err != nil {
		return nil, fmt.Errorf("parsing URL %s: %w", redactURL(o.url), err)
	}
	if v := op.Attrs[llb.AttrHTTPChecksum]; v != "" {
		dg, err := digest.Parse(v)
		if err != nil {
			return nil, fmt.Errorf("parsing checksum of %s: %w", redactURL(o.url), err)
		}
		o.checksum = dg
	}
	if v := op.Attrs[llb.AttrHTTPPerm]; v != "" {
		// Always octal, with or without the leading 0: "644" means rw-r--r--.
		p, err := strconv.ParseUint(strings.TrimPrefix(v, "0o"), 8, 32)
		if err != nil || p > 0o7777 {
			return nil, fmt.Errorf("parsing mode %q of %s: want octal permissions", v, redactURL(o.url))
		}
		if p != 0 {
			o.perm = os.FileMode(p)
		}
	}
	return o, nil
}

// httpKeyVersion versions the extra key of downloads.
const httpKeyVersion = 1

func (o *httpOp) CacheKey(ctx context.Context, _ []solver.Result) (digest.Digest, error) {
	if o.checksum != "" {
		// Pinned: the key is known without the network, so a cached build stays offline.
		return keyOf(struct {
			V        int           `json:"v"`
			Checksum digest.Digest `json:"checksum"`
			Filename string        `json:"filename"`
			Perm     uint32        `json:"perm"`
		}{httpKeyVersion, o.checksum, fileNameFor(o.url, o.filename, nil), uint32(o.perm)})
	}
	dl, err := o.fetched(ctx)
	if err != nil {
		return "", err
	}
	var mt string
	if !dl.modTime.IsZero() {
		mt = dl.modTime.UTC().Format(http.TimeFormat)
	}
	return keyOf(struct {
		V        int           `json:"v"`
		Content  digest.Digest `json:"content"`
		Filename string        `json:"filename"`
		Perm     uint32        `json:"perm"`
		ModTime  string        `json:"modTime,omitempty"`
	}{httpKeyVersion, dl.digest, dl.filename, uint32(o.perm), mt})
}

func (o *httpOp) Exec(ctx context.Context, _ []solver.Result, logs io.Writer) (cache.Ref, error) {
	dl, err := o.fetched(ctx)
	if err != nil {
		return cache.Ref{}, err
	}
	o.mu.Lock()
	o.dl = nil
	o.mu.Unlock()
	defer os.Remove(dl.path)
	fmt.Fprintf(logs, "downloaded %s (%s)\n", redactURL(o.url), dl.digest)

	a, err := o.d.Snapshots.Ingest(ctx)
	if err != nil {
		return cache.Ref{}, err
	}
	defer a.Discard(ctx)
	dst := filepath.Join(a.UpperDir(), dl.filename)
	if err := moveFile(dl.path, dst); err != nil {
		return cache.Ref{}, fmt.Errorf("storing download of %s: %w", redactURL(o.url), err)
	}
	// Chmod, not the create mode: the umask must not change what the layer says.
	if err := os.Chmod(dst, o.perm); err != nil {
		return cache.Ref{}, fmt.Errorf("storing download of %s: %w", redactURL(o.url), err)
	}
	// Without Last-Modified the time is the epoch, so the layer does not depend on when
	// it was built.
	mt := dl.modTime
	if mt.IsZero() {
		mt = time.Unix(0, 0)
	}
	if err := os.Chtimes(dst, mt, mt); err != nil {
		return cache.Ref{}, fmt.Errorf("storing download of %s: %w", redactURL(o.url), err)
	}
	return commitIngest(ctx, o.d, a)
}

// fetched returns the download made by CacheKey, or downloads now.
func (o *httpOp) fetched(ctx context.Context) (*download, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dl != nil {
		return o.dl, nil
	}
	dl, err := o.fetch(ctx)
	if err != nil {
		return nil, err
	}
	o.dl = dl
	return dl, nil
}

// fetch streams the URL into a temp file, hashing it on the way (with the checksum's
// algorithm when there is one) and verifying the checksum.
func (o *httpOp) fetch(ctx context.Context) (_ *download, retErr error) {
	shown := redactURL(o.url)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.url, nil)
	if err != nil {
		return nil, fmt.Errorf("downloading %s: %w", shown, err)
	}
	client := o.d.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		// The client's error repeats the URL, credentials included.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("downloading %s: %w", shown, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("downloading %s: server answered %s", shown, resp.Status)
	}

	dir := o.d.TempDir
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, "http-*")
	if err != nil {
		return nil, fmt.Errorf("downloading %s: %w", shown, err)
	}
	defer func() {
		f.Close()
		if retErr != nil {
			os.Remove(f.Name())
		}
	}()
	alg := digest.Canonical
	if o.checksum != "" {
		alg = o.checksum.Algorithm()
	}
	h := alg.Digester()
	if _, err := io.Copy(io.MultiWriter(f, h.Hash()), resp.Body); err != nil {
		return nil, fmt.Errorf("downloading %s: %w", shown, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("downloading %s: %w", shown, err)
	}
	got := h.Digest()
	if o.checksum != "" && got != o.checksum {
		return nil, fmt.Errorf("verifying download of %s: content has digest %s, expected %s", shown, got, o.checksum)
	}
	dl := &download{path: f.Name(), digest: got, filename: fileNameFor(o.url, o.filename, resp)}
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		if t, err := http.ParseTime(lm); err == nil {
			dl.modTime = t
		}
	}
	return dl, nil
}

// fileNameFor is BuildKit's rule: the filename attribute, else the filename of a
// Content-Disposition header, else the URL path's last element, else "download"; each
// reduced to a safe base name.
func fileNameFor(rawURL, attr string, resp *http.Response) string {
	if attr != "" {
		return safeFileName(attr)
	}
	if resp != nil {
		if cd := resp.Header.Get("Content-Disposition"); cd != "" {
			if _, params, err := mime.ParseMediaType(cd); err == nil {
				if name := params["filename"]; name != "" && !strings.HasSuffix(name, "/") {
					return safeFileName(name)
				}
			}
		}
	}
	if u, err := url.Parse(rawURL); err == nil {
		if base := path.Base(u.Path); base != "." && base != "/" {
			return safeFileName(base)
		}
	}
	return defaultHTTPFilename
}

// safeFileName reduces s to a base name that cannot escape the directory it is
// created in.
func safeFileName(s string) string {
	name := filepath.Base(filepath.FromSlash(strings.TrimSpace(s)))
	if name == "" || name == "." || name == ".." || name == "/" {
		return defaultHTTPFilename
	}
	for _, r := range name {
		if r == 0 || unicode.IsControl(r) {
			return defaultHTTPFilename
		}
	}
	return name
}

// redactMask replaces credentials in messages.
const redactMask = "xxxxx"

// redactURL hides a URL's user and password in messages, as BuildKit does: a token is
// often passed as the user name.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	_, hasPassword := u.User.Password()
	switch {
	case u.User.Username() != "" && hasPassword:
		u.User = url.UserPassword(redactMask, redactMask)
	case u.User.Username() != "":
		u.User = url.User(redactMask)
	case hasPassword:
		u.User = url.UserPassword("", redactMask)
	}
	return u.String()
}

// moveFile renames src to dst, copying when they are on different filesystems.
func moveFile(src, dst string) error {
	err := os.Rename(src, dst)
	if !errors.Is(err, unix.EXDEV) {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Remove(src)
}

// commitIngest turns the upper dir of an ingest snapshot into a layer and commits the
// snapshot under the layer's diff id. Nothing in the dir gives the empty filesystem.
func commitIngest(ctx context.Context, d Deps, a *snapshot.Active) (cache.Ref, error) {
	l, empty, err := diff.WriteLayer(ctx, d.Content, a.UpperDir())
	if err != nil {
		return cache.Ref{}, err
	}
	if empty {
		return cache.Ref{}, a.Discard(ctx)
	}
	if err := a.Commit(ctx, cache.SnapshotID(l.DiffID)); err != nil {
		return cache.Ref{}, err
	}
	return cache.Ref{Layers: []cache.Layer{l}}, nil
}

// keyOf is the digest of v's JSON: the extra cache key of a source.
func keyOf(v any) (digest.Digest, error) {
	dt, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encoding cache key: %w", err)
	}
	return digest.FromBytes(dt), nil
}
