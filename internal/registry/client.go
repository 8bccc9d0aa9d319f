package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

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
	insecure    map[string]bool
	allInsecure bool
	platform    v1.Platform
	keychain    authn.Keychain
	alwaysPull  bool
	backoff     remote.Backoff
}

// Option configures a Client.
type Option func(*options) error

// WithInsecureRegistries allows plain http for these hosts (https is tried first) and
// accepts their TLS certificates unverified, as Docker does for insecure registries.
// An entry with a port ("reg:5000") matches that port only; one without matches any
// port. Loopback hosts (localhost, 127.0.0.0/8, [::1]) are always insecure.
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

// WithInsecure treats every registry as insecure (see WithInsecureRegistries). It is
// meant for a client derived with With for one push, such as an image output with
// insecure=true.
func WithInsecure() Option {
	return func(o *options) error {
		o.allInsecure = true
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

// WithKeychain sets where credentials come from; the default is DockerKeychain of
// DockerConfigDir.
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

// WithRetries sets how often a request that failed with a 5xx or 429 status or a
// dropped connection is tried again, and the first wait (each next wait is three
// times longer). The default is 3 tries after 1s, 3s and 9s.
func WithRetries(retries int, firstWait time.Duration) Option {
	return func(o *options) error {
		if retries < 0 || firstWait <= 0 {
			return fmt.Errorf("retries %d after %s: want retries >= 0 and a positive wait", retries, firstWait)
		}
		// Steps counts tries, not retries.
		o.backoff = remote.Backoff{Duration: firstWait, Factor: 3, Jitter: 0.1, Steps: retries + 1}
		return nil
	}
}

// New returns a Client that stores pulled blobs in cs and remembers tag resolutions
// and where blobs came from in stateDir (created if needed; it should live under the
// store root).
func New(cs *content.Store, stateDir string, opts ...Option) (*Client, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("configuring registry client: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(stateDir, sourcesDir), 0o755); err != nil {
		return nil, fmt.Errorf("creating registry state directory: %w", err)
	}
	return makeClient(cs, stateDir, o)
}

func defaultOptions() options {
	return options{
		insecure: map[string]bool{},
		platform: v1.Platform{OS: "linux", Architecture: runtime.GOARCH},
		keychain: DockerKeychain(DockerConfigDir()),
		backoff:  remote.Backoff{Duration: time.Second, Factor: 3, Jitter: 0.1, Steps: 4},
	}
}

// With returns a client like c with opts applied on top of c's options; it shares c's
// content store and state.
func (c *Client) With(opts ...Option) (*Client, error) {
	o := c.o
	o.insecure = maps.Clone(c.o.insecure)
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("configuring registry client: %w", err)
		}
	}
	return makeClient(c.cs, c.stateDir, o)
}

func makeClient(cs *content.Store, stateDir string, o options) (*Client, error) {
	c := &Client{cs: cs, stateDir: stateDir, o: o}
	ropts := []remote.Option{
		remote.WithAuthFromKeychain(o.keychain),
		remote.WithUserAgent(userAgent),
		remote.WithPlatform(o.platform),
		remote.WithTransport(c.transport()),
		remote.WithRetryBackoff(o.backoff),
	}
	var err error
	if c.puller, err = remote.NewPuller(ropts...); err != nil {
		return nil, fmt.Errorf("creating registry client: %w", err)
	}
	if c.pusher, err = remote.NewPusher(ropts...); err != nil {
		return nil, fmt.Errorf("creating registry client: %w", err)
	}
	return c, nil
}

// transport is the HTTP transport under go-containerregistry's auth and retry layers:
// its default, except that TLS certificates of insecure registries go unverified.
func (c *Client) transport() http.RoundTripper {
	secure := remote.DefaultTransport.(*http.Transport).Clone()
	unverified := secure.Clone()
	unverified.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // only for registries declared insecure
	return &hostTransport{secure: secure, unverified: unverified, insecure: c.insecure}
}

// hostTransport sends https requests to insecure registries through a transport that
// skips certificate verification, and everything else through the normal one.
type hostTransport struct {
	secure, unverified http.RoundTripper
	insecure           func(host string) bool
}

func (t *hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "https" && t.insecure(req.URL.Host) {
		return t.unverified.RoundTrip(req)
	}
	return t.secure.RoundTrip(req)
}

// insecure reports whether plain http and unverified TLS may be used for host.
func (c *Client) insecure(host string) bool {
	if c.o.allInsecure || c.o.insecure[host] {
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

// withRetry runs f until it succeeds, fails in a way that trying again cannot fix, or
// the client's retries are used up. It is for work go-containerregistry's transport
// cannot retry by itself, such as a download whose connection drops mid-body.
func (c *Client) withRetry(ctx context.Context, f func() error) error {
	b := c.o.backoff
	for {
		err := f()
		if err == nil || b.Steps <= 1 || !transient(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(b.Step()):
		}
	}
}
