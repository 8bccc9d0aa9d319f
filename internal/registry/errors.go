package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Classes of registry failures; test with errors.Is. The original error from the
// transport stays in the chain as well.
var (
	ErrUnreachable  = errors.New("registry unreachable")
	ErrUnauthorized = errors.New("unauthorized")
	ErrDenied       = errors.New("access denied")
	ErrNotFound     = errors.New("not found")
)

// userError carries a short message for people plus the class and the cause for code.
type userError struct {
	msg   string
	class error
	cause error
}

func (e *userError) Error() string   { return e.msg }
func (e *userError) Unwrap() []error { return []error{e.class, e.cause} }

// explain rewrites a go-containerregistry error into what went wrong in user terms.
// Errors it does not recognise are returned unchanged: a raw message beats a vague one.
// Callers add the reference ("pulling HOST/REPO:TAG: ...").
func explain(host string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ue *userError
	if errors.As(err, &ue) {
		return err
	}
	mk := func(class error, msg string) error { return &userError{msg: msg, class: class, cause: err} }
	unreachable := func(why string) error {
		return mk(ErrUnreachable, "cannot reach registry "+host+": "+why)
	}
	unauthorized := func() error {
		return mk(ErrUnauthorized, "unauthorized: authentication required (run builder login "+host+")")
	}

	var terr *transport.Error
	if errors.As(err, &terr) {
		for _, d := range terr.Errors {
			switch d.Code {
			case transport.UnauthorizedErrorCode:
				return unauthorized()
			case transport.DeniedErrorCode:
				msg := "access denied"
				if d.Message != "" && !strings.EqualFold(d.Message, msg) {
					msg += ": " + d.Message
				}
				return mk(ErrDenied, msg)
			case transport.ManifestUnknownErrorCode:
				return mk(ErrNotFound, "not found: manifest unknown")
			case transport.NameUnknownErrorCode:
				return mk(ErrNotFound, "not found: repository unknown")
			case transport.BlobUnknownErrorCode:
				return mk(ErrNotFound, "not found: blob unknown")
			case transport.TooManyRequestsErrorCode:
				return mk(ErrUnreachable, "registry "+host+" is rate limiting requests (429 Too Many Requests); try again later")
			}
		}
		switch terr.StatusCode {
		case http.StatusUnauthorized:
			return unauthorized()
		case http.StatusForbidden:
			return mk(ErrDenied, "access denied")
		case http.StatusNotFound:
			return mk(ErrNotFound, "not found")
		case http.StatusTooManyRequests:
			return mk(ErrUnreachable, "registry "+host+" is rate limiting requests (429 Too Many Requests); try again later")
		}
		if terr.StatusCode >= 500 {
			return mk(ErrUnreachable, "registry "+host+" failed: "+http.StatusText(terr.StatusCode)+" ("+terr.Error()+")")
		}
		return err
	}

	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return unreachable("connection refused")
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return unreachable("no route to host")
	case errors.Is(err, syscall.ECONNRESET):
		return unreachable("connection reset")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return unreachable("connection closed in the middle of a transfer")
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return unreachable("no such host")
		}
		return unreachable(dnsErr.Err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return unreachable("timed out")
	}
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return unreachable("TLS certificate not trusted: " + certErr.Err.Error() + "; declare it an insecure registry to skip verification")
	}
	// net/http does not export this one; it is the common mistake of a plain-http
	// registry that was not declared insecure.
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return unreachable("it speaks plain http; declare it an insecure registry (--insecure-registry " + host + ") to allow that")
	}
	return err
}

// transient reports whether trying again might succeed: the connection dropped or the
// registry answered with a server error or a rate limit.
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode >= 500 || terr.StatusCode == http.StatusTooManyRequests || terr.Temporary()
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}
