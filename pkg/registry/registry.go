package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/fail"
)

// Access is how to reach a registry: credentials and TLS.
type Access struct {
	Creds  *creds.Credentials // nil for anonymous
	CAFile string             // extra CA certificate(s), PEM; "" for the system pool
	Jobs   int                // concurrent blob transfers; 0 for the library default
}

// Options returns go-containerregistry options for ctx.
func (a Access) Options(ctx context.Context) ([]remote.Option, error) {
	t, err := a.Transport()
	if err != nil {
		return nil, err
	}
	opts := []remote.Option{
		remote.WithContext(ctx), remote.WithTransport(t),
		remote.WithRetryBackoff(retryBackoff),
		remote.WithRetryStatusCodes(retryStatusCodes...),
		remote.WithRetryPredicate(retryable),
	}
	if a.Creds != nil {
		opts = append(opts, remote.WithAuth(a.Creds.Authenticator()))
	} else {
		opts = append(opts, remote.WithAuth(authn.Anonymous))
	}
	if a.Jobs > 0 {
		opts = append(opts, remote.WithJobs(a.Jobs))
	}
	return opts, nil
}

// Retry what a registry under load answers (408, 429, 5xx, GitHub's
// secondary rate limit as a 403) and dropped connections, with backoff: 1s,
// 3s, 9s, then give up.
var (
	retryBackoff     = remote.Backoff{Duration: time.Second, Factor: 3, Jitter: 0.1, Steps: 4}
	retryStatusCodes = []int{http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusForbidden,
		http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}
)

// RetryTransport is Transport retrying as the registry operations do, for
// requests made outside go-containerregistry's operations (the preflight).
func (a Access) RetryTransport() (http.RoundTripper, error) {
	t, err := a.Transport()
	if err != nil {
		return nil, err
	}
	return transport.NewRetry(t, transport.WithRetryBackoff(retryBackoff),
		transport.WithRetryStatusCodes(retryStatusCodes...), transport.WithRetryPredicate(retryable)), nil
}

// retryable tells the failures worth another attempt: what the registry
// calls temporary (408, 429, 5xx), GitHub's secondary rate limit (a 403;
// every other 403 is a refusal, not retried), and connections dropped
// mid-transfer (reset, EOF, broken pipe, an HTTP/2 stream reset). Without
// it go-containerregistry does not retry blob uploads at all.
func retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusForbidden {
		return IsSecondaryRateLimit(te)
	}
	var t interface{ Temporary() bool }
	if errors.As(err, &t) && t.Temporary() {
		return true
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "stream error") || strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe")
}

// Transport is the HTTP transport for the registry: the default one, with
// --registry-ca's certificates added to the system pool.
func (a Access) Transport() (http.RoundTripper, error) {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	if a.CAFile != "" {
		pem, err := os.ReadFile(a.CAFile)
		if err != nil {
			return nil, fail.Wrap(fail.Usage, errors.Unwrap(err), "check the --registry-ca path", "cannot read registry CA %s", a.CAFile)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fail.New(fail.Usage, "give --registry-ca a PEM certificate", "registry CA %s holds no PEM certificate", a.CAFile)
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return t, nil
}

// Explain turns a registry error into a classified one with the cause and
// fix. op is what was being done ("push", "pull"), ref the image. err stays
// the cause (redacted of the token): errors.As finds the *transport.Error,
// the x509 error or the *net.DNSError under the one-line message.
func (a Access) Explain(err error, op string, ref name.Reference) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var fe *fail.Error
	if errors.As(err, &fe) {
		return err
	}
	reg := ref.Context().RegistryStr()
	// TLS first: for loopback registries go-containerregistry retries over
	// plain HTTP, whose 400 would hide the certificate problem.
	var ua x509.UnknownAuthorityError
	var cv *tls.CertificateVerificationError
	if errors.As(err, &ua) || errors.As(err, &cv) || strings.Contains(err.Error(), "certificate signed by unknown authority") {
		return fail.WithCause(fail.Registry, a.redact(err), "pass --registry-ca FILE with the registry's CA certificate",
			"registry %s presented a certificate signed by an unknown authority", reg)
	}
	var hn x509.HostnameError
	if errors.As(err, &hn) {
		return fail.WithCause(fail.Registry, a.redact(err), "use the host name the certificate was issued for", "registry %s: %v", reg, hn)
	}
	var te *transport.Error
	if errors.As(err, &te) {
		if fe, ok := a.explainStatus(te, op, ref); ok {
			return fe
		}
		switch te.StatusCode {
		case http.StatusNotFound:
			for _, d := range te.Errors {
				if d.Code == transport.BlobUnknownErrorCode {
					return fail.WithCause(fail.Corrupt, a.redact(te), "push the image again", "%s: a blob it references is missing from registry %s", ref, reg)
				}
			}
			return fail.WithCause(fail.NotFound, a.redact(te), "check the reference, and that the push finished", "%s not found in registry %s", ref, reg)
		}
		if fromTokenEndpoint(te) {
			// The body's message alone ("UNAVAILABLE: down for
			// maintenance") does not say where or which status.
			return fail.Wrap(fail.Registry, a.redact(te), "rerun; if it persists, check the registry's status",
				"registry %s refused the %s of %s at its token endpoint (%d %s)", reg, op, ref, te.StatusCode, http.StatusText(te.StatusCode))
		}
		return fail.Wrap(fail.Registry, a.redact(te), "rerun; if it persists, check the registry's status", "registry %s refused the %s of %s", reg, op, ref)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return fail.WithCause(fail.Registry, a.redact(err), "check the registry host name (--registry, or the image reference) for a typo",
				"cannot resolve registry host %s: no such host", dnsErr.Name)
		}
		return fail.WithCause(fail.Registry, a.redact(err), "check this machine's DNS (/etc/resolv.conf) and network, then rerun",
			"cannot resolve registry host %s: the DNS lookup failed (%s)", dnsErr.Name, dnsErr.Err)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) || strings.Contains(err.Error(), "connection refused") {
		return fail.WithCause(fail.Registry, a.redact(err), "check that the registry is up and --registry is right", "cannot connect to registry %s", reg)
	}
	return fail.Wrap(fail.Registry, a.redact(err), "", "%s of %s failed", op, ref)
}

// redact keeps the error's text but never the token; err stays its cause.
func (a Access) redact(err error) error {
	if a.Creds == nil {
		return err
	}
	return &redactedError{msg: a.Creds.Token.Redact(err.Error()), err: err}
}

// Repository returns <registry>/<owner>/<image>, lowercasing the owner as
// GHCR requires, and checks that the result is a valid repository.
func Repository(registry, owner, image string) (name.Repository, error) {
	if owner == "" {
		return name.Repository{}, fail.New(fail.Usage, "pass --owner (the GitHub user or organisation)", "no registry owner")
	}
	path := strings.ToLower(owner) + "/" + image
	if registry == "" {
		return name.Repository{}, fail.New(fail.Usage, "pass --registry", "no registry")
	}
	repo, err := name.NewRepository(registry+"/"+path, name.StrictValidation)
	if err == nil {
		for _, c := range strings.Split(path, "/") {
			if !pathComponent.MatchString(c) {
				err = fmt.Errorf("path component %q must be lowercase letters and digits joined by '.', '_', '__' or '-'", c)
				break
			}
		}
	}
	if err != nil {
		return name.Repository{}, fail.WithCause(fail.Usage, err, "use lowercase letters, digits, '.', '_' and '-' in --owner and --image-name",
			"%s/%s is not a valid repository: %v", registry, path, err)
	}
	return repo, nil
}

// pathComponent is the OCI distribution spec's rule for one path component.
var pathComponent = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$`)

// Describe is the image reference and digest as users copy them:
// ghcr.io/owner/planner:0.4.0@sha256:….
func Describe(tag name.Tag, digest string) string {
	return fmt.Sprintf("%s@%s", tag.String(), digest)
}
