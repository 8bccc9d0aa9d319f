package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/builderdev/builder/cache/content"
)

// userAgent is sent with every registry request.
const userAgent = "builder"

// Client pulls from and pushes to registries, keeping what it pulls in a content
// store. It is safe for concurrent use; authentication and the registry's scheme are
// worked out once per repository and reused.
type Client struct {
	cs       *content.Store
	stateDir string
	o        options
	puller   *remote.Puller
	pusher   *remote.Pusher
}

type options struct {
	insecure   map[string]bool
	platform   v1.Platform
	keychain   authn.Keychain
	alwaysPull bool
}

// Option configures a Client.
type Option func(*options) error

// WithInsecureRegistries allows plain http for these hosts (https is tried first). An
// entry with a port ("reg:5000") matches that port only; one without matches any
// port. Loopback hosts (localhost, 127.0.0.0/8, [::1]) are always allowed plain http.
func WithInsecureRegistries(hosts ...string) Option {
	return func(o *options) error {
		for _, h := range hosts {
			if h == "" || strings.Contains(h, "/") {
				return fmt.Errorf("insecure registry %q: want a host or host:port", h)
			}
			o.insecure[h] = true
		}
		return nil
	}
}

// WithPlatform picks which image of a multi-platform index Resolve returns; the
// default is linux on the architecture builder runs on.
func WithPlatform(p v1.Platform) Option {
	return func(o *options) error {
		if p.OS == "" || p.Architecture == "" {
			return fmt.Errorf("platform %q: os and architecture are required", p.String())
		}
		o.platform = p
		return nil
	}
}

// WithKeychain sets where credentials come from; the default reads Docker's config
// file (~/.docker/config.json, or $DOCKER_CONFIG/config.json) and its helpers.
func WithKeychain(k authn.Keychain) Option {
	return func(o *options) error {
		if k == nil {
			return errors.New("keychain is nil")
		}
		o.keychain = k
		return nil
	}
}

// WithAlwaysPull makes Resolve ask the registry about tags even when it resolved them
// before on this root (docker build --pull).
func WithAlwaysPull() Option {
	return func(o *options) error {
		o.alwaysPull = true
		return nil
	}
}

// New returns a Client that stores pulled blobs in cs and remembers tag resolutions
// in stateDir (created if needed; it should live under the store root).
func New(cs *content.Store, stateDir string, opts ...Option) (*Client, error) {
	o := options{
		insecure: map[string]bool{},
		platform: v1.Platform{OS: "linux", Architecture: runtime.GOARCH},
		keychain: authn.DefaultKeychain,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("configuring registry client: %w", err)
		}
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating registry state directory: %w", err)
	}
	ropts := []remote.Option{
		remote.WithAuthFromKeychain(o.keychain),
		remote.WithUserAgent(userAgent),
		remote.WithPlatform(o.platform),
	}
	puller, err := remote.NewPuller(ropts...)
	if err != nil {
		return nil, fmt.Errorf("creating registry client: %w", err)
	}
	pusher, err := remote.NewPusher(ropts...)
	if err != nil {
		return nil, fmt.Errorf("creating registry client: %w", err)
	}
	return &Client{cs: cs, stateDir: stateDir, o: o, puller: puller, pusher: pusher}, nil
}

// insecure reports whether plain http may be used for host.
func (c *Client) insecure(host string) bool {
	if c.o.insecure[host] {
		return true
	}
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = strings.Trim(host, "[]")
	}
	if c.o.insecure[h] || h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// nameOpts are the go-containerregistry parse options for host. name.Insecure makes
// the transport try https first and fall back to http.
func (c *Client) nameOpts(host string) []name.Option {
	if c.insecure(host) {
		return []name.Option{name.Insecure}
	}
	return nil
}

// repository is p's repository as go-containerregistry names it.
func (c *Client) repository(p parsed) (name.Repository, error) {
	return name.NewRepository(p.name(), c.nameOpts(p.host)...)
}

// reference is p as go-containerregistry names it: by digest if it has one, else by tag.
func (c *Client) reference(p parsed) (name.Reference, error) {
	if p.digest != "" {
		return name.NewDigest(p.name()+"@"+p.digest.String(), c.nameOpts(p.host)...)
	}
	return name.NewTag(p.name()+":"+p.tag, c.nameOpts(p.host)...)
}

// Push writes img to ref, uploading only the blobs the registry lacks.
func (c *Client) Push(ctx context.Context, ref string, img v1.Image) error {
	p, err := parse(ref)
	if err != nil {
		return err
	}
	gref, err := c.reference(p)
	if err != nil {
		return fmt.Errorf("pushing %s: %w", p, err)
	}
	if err := c.pusher.Push(ctx, gref, img); err != nil {
		return fmt.Errorf("pushing %s: %w", p, explain(p.host, err))
	}
	return nil
}
