package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/fail"
)

// asGot is what a library returns: the cause inside url.Error and a
// wrapping of go-containerregistry's own.
func asGot(cause error) error {
	return fmt.Errorf("GET https://reg.example/v2/: %w", &url.Error{Op: "Get", URL: "https://reg.example/v2/", Err: cause})
}

func status(code int, diags ...transport.Diagnostic) *transport.Error {
	return &transport.Error{StatusCode: code, Errors: diags, Request: &http.Request{Method: http.MethodGet, URL: &url.URL{Scheme: "https", Host: "reg.example", Path: "/v2/o/planner/manifests/1"}}}
}

var (
	testRef   = name.MustParseReference("reg.example/o/planner:1")
	withToken = Access{Creds: &creds.Credentials{Username: "me", Token: creds.NewSecret("ghp_secret123"), Source: "$GITHUB_TOKEN"}}
)

// TestExplainKeepsCause: every branch of Explain keeps its one-line
// message and fix, and its cause: errors.Is/As reach the error the library
// returned (the transport error with its status, the x509 error, the DNS
// error), through the token's redaction too.
func TestExplainKeepsCause(t *testing.T) {
	unknownCA := x509.UnknownAuthorityError{}
	verifyErr := &tls.CertificateVerificationError{Err: unknownCA}
	hostname := x509.HostnameError{Certificate: &x509.Certificate{DNSNames: []string{"other.example"}}, Host: "reg.example"}
	dnsNotFound := &net.DNSError{Err: "no such host", Name: "reg.example", IsNotFound: true}
	dnsTimeout := &net.DNSError{Err: "i/o timeout", Name: "reg.example", IsTimeout: true}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	plain := errors.New("something else")
	for _, tc := range []struct {
		name   string
		access Access
		err    error
		class  fail.Class
		msg    string
		cause  func(error) bool // what errors.Is/As must find
	}{
		{"unknown authority", Access{}, asGot(unknownCA), fail.Registry,
			"registry reg.example presented a certificate signed by an unknown authority: pass --registry-ca FILE with the registry's CA certificate",
			func(err error) bool { var ua x509.UnknownAuthorityError; return errors.As(err, &ua) }},
		{"certificate verification", withToken, asGot(verifyErr), fail.Registry,
			"registry reg.example presented a certificate signed by an unknown authority: pass --registry-ca FILE with the registry's CA certificate",
			func(err error) bool {
				var cv *tls.CertificateVerificationError
				var ua x509.UnknownAuthorityError
				return errors.As(err, &cv) && cv == verifyErr && errors.As(err, &ua)
			}},
		{"host name", Access{}, asGot(hostname), fail.Registry,
			"registry reg.example: x509: certificate is valid for other.example, not reg.example: use the host name the certificate was issued for",
			func(err error) bool {
				var hn x509.HostnameError
				return errors.As(err, &hn) && hn.Host == "reg.example"
			}},
		{"404", withToken, status(http.StatusNotFound, transport.Diagnostic{Code: transport.ManifestUnknownErrorCode}), fail.NotFound,
			"reg.example/o/planner:1 not found in registry reg.example: check the reference, and that the push finished",
			statusIs(http.StatusNotFound)},
		{"404 blob unknown", Access{}, status(http.StatusNotFound, transport.Diagnostic{Code: transport.BlobUnknownErrorCode}), fail.Corrupt,
			"reg.example/o/planner:1: a blob it references is missing from registry reg.example: push the image again",
			statusIs(http.StatusNotFound)},
		{"401 anonymous", Access{}, status(http.StatusUnauthorized), fail.Credentials,
			"registry reg.example rejected anonymous for pull of reg.example/o/planner:1 (401): package reg.example/o/planner is private: pass a token with read:packages ($GITHUB_TOKEN or --token-file), or make the package public in its package settings",
			statusIs(http.StatusUnauthorized)},
		{"401 token", withToken, status(http.StatusUnauthorized), fail.Credentials,
			"registry reg.example rejected the token from $GITHUB_TOKEN for pull of reg.example/o/planner:1 (401 unauthorized): check that the token is valid and not expired, and the username matches it",
			statusIs(http.StatusUnauthorized)},
		{"403 token", withToken, status(http.StatusForbidden, transport.Diagnostic{Code: transport.DeniedErrorCode, Message: "denied"}), fail.Credentials,
			"registry reg.example denied pull of reg.example/o/planner:1 with the token from $GITHUB_TOKEN (403 denied): give the token write:packages (in GitHub Actions: permissions: packages: write, and link the package to the repository)",
			statusIs(http.StatusForbidden)},
		{"429", withToken, status(http.StatusTooManyRequests, transport.Diagnostic{Code: transport.TooManyRequestsErrorCode}), fail.RateLimit,
			"registry reg.example rate-limited the pull of reg.example/o/planner:1 (429), still after retries with backoff: wait a few minutes and rerun; an authenticated token has higher limits",
			statusIs(http.StatusTooManyRequests)},
		{"500", withToken, status(http.StatusInternalServerError, transport.Diagnostic{Code: transport.UnknownErrorCode, Message: "boom"}), fail.Registry,
			"registry reg.example refused the pull of reg.example/o/planner:1: GET https://reg.example/v2/o/planner/manifests/1: UNKNOWN: boom: rerun; if it persists, check the registry's status",
			statusIs(http.StatusInternalServerError)},
		{"DNS no such host", Access{}, asGot(&net.OpError{Op: "dial", Net: "tcp", Err: dnsNotFound}), fail.Registry,
			"cannot resolve registry host reg.example: no such host: check the registry host name (--registry, or the image reference) for a typo",
			func(err error) bool { var d *net.DNSError; return errors.As(err, &d) && d == dnsNotFound }},
		{"DNS failure", withToken, asGot(&net.OpError{Op: "dial", Net: "tcp", Err: dnsTimeout}), fail.Registry,
			"cannot resolve registry host reg.example: the DNS lookup failed (i/o timeout): check this machine's DNS (/etc/resolv.conf) and network, then rerun",
			func(err error) bool { var d *net.DNSError; return errors.As(err, &d) && d == dnsTimeout }},
		{"connection refused", Access{}, asGot(refused), fail.Registry,
			"cannot connect to registry reg.example: check that the registry is up and --registry is right",
			func(err error) bool {
				var o *net.OpError
				return errors.As(err, &o) && errors.Is(err, syscall.ECONNREFUSED)
			}},
		{"anything else", Access{}, plain, fail.Registry, "pull of reg.example/o/planner:1 failed: something else",
			func(err error) bool { return errors.Is(err, plain) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.access.Explain(tc.err, "pull", testRef)
			if fail.ClassOf(err) != tc.class {
				t.Errorf("class %s, want %s", fail.ClassOf(err), tc.class)
			}
			if err.Error() != tc.msg {
				t.Errorf("message\n  %s\nwant\n  %s", err, tc.msg)
			}
			if !tc.cause(err) {
				t.Errorf("errors.Is/As do not reach the cause of %v", err)
			}
		})
	}
}

func statusIs(code int) func(error) bool {
	return func(err error) bool {
		var te *transport.Error
		return errors.As(err, &te) && te.StatusCode == code
	}
}

// TestExplainPassesThrough: an interrupt and an error already classified
// come back as they are.
func TestExplainPassesThrough(t *testing.T) {
	c := fmt.Errorf("push: %w", context.Canceled)
	if err := (Access{}).Explain(c, "push", testRef); err != c {
		t.Errorf("cancelled: %v", err)
	}
	fe := fail.New(fail.Usage, "", "x")
	if err := (Access{}).Explain(fe, "push", testRef); err != error(fe) {
		t.Errorf("classified: %v", err)
	}
	if (Access{}).Explain(nil, "push", testRef) != nil {
		t.Error("nil is not nil")
	}
}

// TestExplainRedactsToken: the token never shows in the message, while
// the cause stays reachable.
func TestExplainRedactsToken(t *testing.T) {
	cause := errors.New("dial with ghp_secret123 failed")
	err := withToken.Explain(cause, "push", testRef)
	if want := "push of reg.example/o/planner:1 failed: dial with " + creds.Redacted + " failed"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if !errors.Is(err, cause) {
		t.Errorf("%v: the cause is lost", err)
	}
}

// TestRepositoryKeepsCause: the reference parser's error stays the cause.
func TestRepositoryKeepsCause(t *testing.T) {
	_, err := Repository("ghcr.io", "a b", "planner")
	var ne *name.ErrBadName
	if !errors.As(err, &ne) {
		t.Errorf("%v: the name error is not its cause", err)
	}
}
