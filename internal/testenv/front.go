package testenv

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// tokenFront is the stand-in's public face: TLS on the registry's address,
// GET /token answered by the token service, everything else passed to
// distribution on a second loopback port. The token endpoint must share
// the registry's host and port, as GHCR's does (ghcr.io/token):
// go-containerregistry v0.21.6+ refuses a realm on any other private
// address. Between client and distribution it makes the registry answer as
// GHCR does where distribution differs:
//
//   - A write refused for scope (distribution: 401 insufficient_scope) is
//     GHCR's 403 {"errors":[{"code":"DENIED","message":"permission_denied:
//     The token provided does not match expected scopes."}]}, with no
//     challenge to retry.
//   - A cross-repository mount whose source the token may not read starts a
//     plain upload (202), as the distribution spec asks of a registry that
//     cannot mount; GHCR mounts across owners when the source is readable
//     (k3s-io/k3s#2401). distribution would refuse the whole POST.
//   - An expired token is refused at once (401 invalid_token, the client
//     fetches a new one) on a request without a body; distribution allows
//     60 s of clock skew. A request with a body keeps that leeway: no client
//     can replay a body it has streamed, so the refusal lands on the next
//     request (the upload's commit), as it does for a client of GHCR whose
//     token runs out mid-upload.
type tokenFront struct {
	tokens  *tokenService
	backend *url.URL
	srv     *http.Server
	rp      *httputil.ReverseProxy
}

// GHCR's refusals of a write: by a PAT without write:packages, and by a
// workflow's GITHUB_TOKEN without packages: write.
const (
	scopeDenied   = "permission_denied: The token provided does not match expected scopes."
	actionsDenied = "permission_denied: write_package"
)

var insufficientScope = regexp.MustCompile(`error="insufficient_scope"`)

func startTokenFront(l net.Listener, cert tls.Certificate, tokens *tokenService, backend string) *tokenFront {
	f := &tokenFront{tokens: tokens, backend: &url.URL{Scheme: "http", Host: backend}}
	f.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(f.backend)
			// distribution builds upload Locations and the challenge's realm
			// (autoredirect) from the Host the client used and this scheme.
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Set("X-Forwarded-Proto", "https")
		},
		ModifyResponse: f.translate,
		ErrorLog:       log.New(io.Discard, "", 0), // clients that give up mid-request are part of the tests
		FlushInterval:  -1,
	}
	f.srv = &http.Server{
		Handler:           f,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // go-containerregistry tries plain HTTP on loopback: not news
	}
	go func() { _ = f.srv.ServeTLS(l, "", "") }()
	return f
}

func (f *tokenFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		f.tokens.ServeHTTP(w, r)
		return
	}
	if raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		c, err := f.tokens.parse(raw)
		if err == nil && r.ContentLength == 0 && len(r.TransferEncoding) == 0 && f.tokens.expired(c) {
			f.tokens.rejected.Add(1)
			f.challenge(w, r, "invalid_token")
			return
		}
		if err == nil && r.Method == http.MethodPost {
			f.mountOrUpload(r, c)
		}
	}
	f.rp.ServeHTTP(w, r)
}

// mountOrUpload drops the mount from a POST …/blobs/uploads/?mount=&from=
// whose token may not pull from the source: the registry then starts an
// upload instead.
func (f *tokenFront) mountOrUpload(r *http.Request, c claims) {
	q := r.URL.Query()
	from := q.Get("from")
	if q.Get("mount") == "" || from == "" || c.grants(from, "pull") {
		return
	}
	q.Del("mount")
	q.Del("from")
	q.Del("origin")
	r.URL.RawQuery = q.Encode()
}

// challenge refuses r as distribution does a token it cannot use, with the
// scope the request needs (GHCR's form: Bearer realm="https://HOST/token",
// service="…",scope="repository:OWNER/NAME:pull").
func (f *tokenFront) challenge(w http.ResponseWriter, r *http.Request, errCode string) {
	c := fmt.Sprintf(`Bearer realm="https://%s/token",service=%q`, r.Host, f.tokens.service)
	if name, ok := repoOf(r.URL.Path); ok {
		actions := "pull"
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			actions = "pull,push"
		}
		c += fmt.Sprintf(`,scope="repository:%s:%s"`, name, actions)
	}
	if errCode != "" {
		c += fmt.Sprintf(`,error=%q`, errCode)
	}
	w.Header().Set("WWW-Authenticate", c)
	jsonError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
}

// repoOf is the repository of an API path: /v2/NAME/{manifests,blobs,tags}/….
func repoOf(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return "", false
	}
	for _, sep := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
		if i := strings.Index(rest, sep); i > 0 {
			return rest[:i], true
		}
	}
	return "", false
}

// translate turns distribution's 401 insufficient_scope on a write into
// GHCR's 403 permission_denied (write_package for a workflow's GITHUB_TOKEN,
// as GHCR answers it).
func (f *tokenFront) translate(resp *http.Response) error {
	req := resp.Request
	if resp.StatusCode != http.StatusUnauthorized || req.Method == http.MethodGet || req.Method == http.MethodHead ||
		!insufficientScope.MatchString(resp.Header.Get("WWW-Authenticate")) || req.Header.Get("Authorization") == "" {
		return nil
	}
	_ = resp.Body.Close()
	msg := scopeDenied
	if raw, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok {
		if c, err := f.tokens.parse(raw); err == nil && c.Actions {
			msg = actionsDenied
		}
	}
	body := []byte(`{"errors":[{"code":"DENIED","message":"` + msg + `"}]}` + "\n")
	resp.StatusCode, resp.Status = http.StatusForbidden, "403 Forbidden"
	resp.Header.Del("WWW-Authenticate")
	resp.Header.Set("Content-Type", "application/json")
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	resp.ContentLength = int64(len(body))
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return nil
}

func (f *tokenFront) close() {
	if f != nil {
		_ = f.srv.Close()
	}
}
