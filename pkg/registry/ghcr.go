package registry

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/idopipe/idopipe/pkg/fail"
)

// GHCR answers most refusals with 401 or 403 and an error body whose
// message alone tells the cause, and each cause has its own fix. These are
// the messages GitHub documents and its users report, matched by a part
// that stays the same (lowercased).
const (
	// GITHUB_TOKEN without packages: write (or, for a new package, an
	// organisation that lets Actions create none).
	ghcrWriteOrg  = "installation not allowed to write organization package"
	ghcrCreateOrg = "installation not allowed to create organization package"
	// GITHUB_TOKEN reading a package that another repository owns.
	ghcrReadOrg = "installation not allowed to read organization package"
	// A package first pushed by hand (or by another repository): this
	// workflow's repository has no access to it.
	ghcrWritePackage = "permission_denied: write_package"
	// A classic token without write:packages.
	ghcrScopes = "does not match expected scopes"
	// A token GitHub does not know: wrong, revoked or expired.
	ghcrUnauthenticated = "user cannot be authenticated with the token provided"
	// A malformed token, or one for another user.
	ghcrInvalidToken = "invalid token"
	// GitHub's secondary rate limit, passed through GHCR as a 403.
	ghcrSecondaryRateLimit = "secondary rate limit"
)

// actionsTokenPrefix starts a GitHub App installation token, which is what
// a workflow's GITHUB_TOKEN is.
const actionsTokenPrefix = "ghs_"

// fromTokenEndpoint tells an answer of the registry's token endpoint (the
// realm of its Bearer challenge, https://ghcr.io/token on GHCR) from one of
// its API (/v2/…). GHCR's token endpoint answers a wrong, revoked or expired
// PAT, or a user it does not know, with 403 {"errors":[{"code":"DENIED",
// "message":"denied"}]}: the credentials themselves were refused, whatever
// the operation.
func fromTokenEndpoint(te *transport.Error) bool {
	return te.Request != nil && te.Request.URL != nil && !strings.HasPrefix(te.Request.URL.Path, "/v2/")
}

// registryMessage is the registry's own error text: the messages of the
// body's errors, else the error's text (which holds the raw body).
func registryMessage(te *transport.Error) string {
	var msgs []string
	for _, d := range te.Errors {
		if d.Message != "" {
			msgs = append(msgs, d.Message)
		}
	}
	if len(msgs) == 0 {
		return te.Error()
	}
	return strings.Join(msgs, "; ")
}

// IsSecondaryRateLimit tells GitHub's secondary rate limit (a 403 that
// says "exceeded a secondary rate limit") from a refusal: it is worth a
// retry with backoff, and is not a credentials problem.
func IsSecondaryRateLimit(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusForbidden &&
		strings.Contains(strings.ToLower(registryMessage(te)), ghcrSecondaryRateLimit)
}

// quoteMessage is the registry's message as one short quoted line.
func quoteMessage(te *transport.Error) string {
	m := fail.OneLine(registryMessage(te))
	if i := strings.Index(strings.ToLower(m), ghcrSecondaryRateLimit); i >= 0 {
		// GHCR wraps it in "Error from intermediary … with-body: {…}":
		// the sentence is the part worth showing.
		start := strings.LastIndex(m[:i], "You have")
		if start < 0 {
			start = i
		}
		end := strings.Index(m[i:], ".")
		if end < 0 {
			end = len(m) - i
		}
		m = m[start : i+end+1]
	}
	if len(m) > 160 {
		m = m[:157] + "..."
	}
	return fmt.Sprintf("%q", m)
}

// explainStatus classifies a registry's 401, 403 and 429 by what its
// message says (GHCR's causes above), each with its own cause and fix. The
// transport error stays the cause (errors.As finds it). ok is false when
// the answer is not one of these.
func (a Access) explainStatus(te *transport.Error, op string, ref name.Reference) (*fail.Error, bool) {
	reg := ref.Context().RegistryStr()
	pkg := ref.Context().String()
	src := "anonymous"
	if a.Creds != nil {
		src = "the token from " + a.Creds.Source
	}
	msg := strings.ToLower(registryMessage(te))
	said := quoteMessage(te)
	e := func(c fail.Class, fix, format string, args ...any) (*fail.Error, bool) {
		return &fail.Error{Class: c, Msg: fmt.Sprintf(format, args...), Fix: fix, Err: a.redact(te)}, true
	}
	switch {
	case a.Creds == nil && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) && !strings.Contains(msg, ghcrSecondaryRateLimit):
		return e(fail.Credentials, "pass a token with read:packages ($GITHUB_TOKEN or --token-file), or make the package public in its package settings",
			"registry %s rejected anonymous for %s of %s (%d): package %s is private", reg, op, ref, te.StatusCode, pkg)
	case te.StatusCode == http.StatusTooManyRequests:
		return e(fail.RateLimit, "wait a few minutes and rerun; an authenticated token has higher limits",
			"registry %s rate-limited the %s of %s (429), still after retries with backoff", reg, op, ref)
	case te.StatusCode == http.StatusForbidden && strings.Contains(msg, ghcrSecondaryRateLimit):
		return e(fail.RateLimit, "wait a few minutes and rerun, with fewer concurrent jobs (--jobs 1) or releases; this is not a credentials problem",
			"registry %s kept answering the %s of %s with GitHub's secondary rate limit (403 %s), still after retries with backoff", reg, op, ref, said)
	case strings.Contains(msg, ghcrWriteOrg), strings.Contains(msg, ghcrCreateOrg):
		return e(fail.Credentials, "give the job permissions: packages: write (and allow Read and write workflow permissions in the organisation's and repository's Actions settings)",
			"registry %s denied the %s of %s: the workflow's GITHUB_TOKEN may not write packages (403 %s)", reg, op, ref, said)
	case strings.Contains(msg, ghcrWritePackage) && a.actionsToken():
		return e(fail.Credentials, "give the job permissions: packages: write; if package "+pkg+" exists already, also add this repository with the Write role under Manage Actions access in its settings",
			"registry %s denied the %s of %s: %s, a workflow's GITHUB_TOKEN, may not write package %s (403 %s)", reg, op, ref, src, pkg, said)
	case strings.Contains(msg, ghcrWritePackage):
		return e(fail.Credentials, "open the package's settings on GitHub, and under Manage Actions access add this repository with the Write role (or push with a classic token of the package's owner)",
			"registry %s denied the %s of %s: package %s exists and this repository has no write access to it, as when it was first pushed by hand (403 %s)", reg, op, ref, pkg, said)
	case strings.Contains(msg, ghcrReadOrg):
		return e(fail.Credentials, "open package "+pkg+"'s settings on GitHub and under Manage Actions access add this repository (Read role), or make the package public",
			"registry %s denied the %s of %s: package %s belongs to another repository, and this workflow's GITHUB_TOKEN may not read it (403 %s)", reg, op, ref, pkg, said)
	case strings.Contains(msg, ghcrScopes) && a.actionsToken():
		return e(fail.Credentials, "give the job permissions: packages: write (a workflow's GITHUB_TOKEN can only read packages without it)",
			"registry %s denied the %s of %s: %s, a workflow's GITHUB_TOKEN, may not write packages (403 %s)", reg, op, ref, src, said)
	case strings.Contains(msg, ghcrScopes):
		return e(fail.Credentials, "create a classic token with write:packages (and read:packages), or run `gh auth refresh -s write:packages`",
			"registry %s denied the %s of %s: %s lacks the write:packages scope (403 %s)", reg, op, ref, src, said)
	case te.StatusCode == http.StatusUnauthorized && strings.Contains(msg, ghcrUnauthenticated):
		return e(fail.Credentials, "the token is wrong, revoked or expired: create a new classic token with write:packages and put it in $GITHUB_TOKEN or --token-file",
			"registry %s cannot authenticate %s for the %s of %s (401 %s)", reg, src, op, ref, said)
	case te.StatusCode == http.StatusForbidden && strings.Contains(msg, ghcrInvalidToken):
		return e(fail.Credentials, "check that the token was copied whole and belongs to --username (or $GITHUB_ACTOR); else create a new classic token",
			"registry %s refused %s as invalid for the %s of %s (403 %s)", reg, src, op, ref, said)
	case fromTokenEndpoint(te) && (te.StatusCode == http.StatusForbidden || te.StatusCode == http.StatusUnauthorized):
		return e(fail.Credentials, "the token is wrong, revoked or expired, or not the token of --username ($GITHUB_ACTOR): create a new classic token with read:packages and write:packages and put it in $GITHUB_TOKEN or --token-file",
			"registry %s refused the credentials (%s) at its token endpoint, before the %s of %s (%d %s)", reg, src, op, ref, te.StatusCode, said)
	case te.StatusCode == http.StatusUnauthorized:
		return e(fail.Credentials, "check that the token is valid and not expired, and the username matches it",
			"registry %s rejected %s for %s of %s (401 unauthorized)", reg, src, op, ref)
	case te.StatusCode == http.StatusForbidden:
		return e(fail.Credentials, "give the token write:packages (in GitHub Actions: permissions: packages: write, and link the package to the repository)",
			"registry %s denied %s of %s with %s (403 denied)", reg, op, ref, src)
	}
	return nil, false
}

// actionsToken tells a workflow's GITHUB_TOKEN (an installation token,
// ghs_…) from a personal access token.
func (a Access) actionsToken() bool {
	return a.Creds != nil && strings.HasPrefix(a.Creds.Token.Reveal(), actionsTokenPrefix)
}

// redactedError keeps an error's text without the token, and the error
// itself as its cause for errors.Is/As.
type redactedError struct {
	msg string
	err error
}

func (r *redactedError) Error() string { return r.msg }
func (r *redactedError) Unwrap() error { return r.err }
