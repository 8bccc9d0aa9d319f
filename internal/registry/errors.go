package registry

import (
	"context"
	"crypto/tls"
	"errors"
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
func explain(host string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	mk := func(class error, msg string) error { return &userError{msg: msg, class: class, cause: err} }
	unreachable := func(why string) error {
		return mk(ErrUnreachable, "cannot reach registry "+host+": "+why)
	}

	var terr *transport.Error
	if errors.As(err, &terr) {
		detail := ""
		for _, d := range terr.Errors {
			switch d.Code {
			case transport.UnauthorizedErrorCode:
				return mk(ErrUnauthorized, "unauthorized: authentication required (log in to "+host+" with docker login)")
			case transport.DeniedErrorCode:
				return mk(ErrDenied, "access denied: "+d.Message)
			case transport.ManifestUnknownErrorCode:
				return mk(ErrNotFound, "not found: manifest unknown")
			case transport.NameUnknownErrorCode:
				return mk(ErrNotFound, "not found: repository unknown")
			case transport.BlobUnknownErrorCode:
				return mk(ErrNotFound, "not found: blob unknown")
			}
			if detail == "" {
				detail = d.Message
			}
		}
		switch terr.StatusCode {
		case http.StatusUnauthorized:
			return mk(ErrUnauthorized, "unauthorized: authentication required (log in to "+host+" with docker login)")
		case http.StatusForbidden:
			return mk(ErrDenied, "access denied")
		case http.StatusNotFound:
			return mk(ErrNotFound, "not found")
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
		return unreachable("TLS certificate not trusted: " + certErr.Err.Error())
	}
	// net/http does not export this one; it is the common mistake of a plain-http
	// registry that was not declared insecure.
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return unreachable("it speaks plain http; declare it an insecure registry to allow that")
	}
	return err
}
