package testenv

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The stand-in's token service: what GHCR's /token answers, as GitHub's
// docs and the issue threads of clients that met it report (GHCR itself
// cannot be reached from here):
//
//   - GET with HTTP Basic (username and PAT) or without credentials, the
//     scopes as repeated scope= parameters or space-joined in one; the reply
//     is {"token": …} only, an opaque string to the client. POST /token
//     answers 405 (open-component-model/ocm#400), so containerd's OAuth2
//     POST falls back to the GET (containerd#4982).
//   - An unknown user or a wrong, revoked or expired PAT: 403
//     {"errors":[{"code":"DENIED","message":"denied"}]} (seen by clients as
//     "denied: denied", and by containerd as "failed to fetch oauth token:
//     unexpected status: 403 Forbidden").
//   - A valid PAT: a token with the actions it may have: pull on public
//     packages and on its owners' packages, push only when the PAT has
//     write:packages. A PAT without it gets a pull-only token, and the
//     upload is then refused with 403 "permission_denied: The token provided
//     does not match expected scopes." (see tokenFront).
//   - Anonymous: a token for pull of public packages; for a private one
//     401 (openai/tunnel-client#75; older reports say 403,
//     docker/build-push-action#628).
//
// The tokens are real JWTs that distribution v3's token auth verifies
// (registry/auth/token: iss, aud ∋ service, exp/nbf, access; the key found
// by kid = the JWK thumbprint of a certificate in rootcertbundle), signed
// with Ed25519.

// PackageScope is what a PAT may do with its owners' packages.
type PackageScope int

const (
	// ReadPackages is a classic PAT with read:packages only (or a
	// GITHUB_TOKEN without packages: write).
	ReadPackages PackageScope = iota
	// WritePackages is a classic PAT with write:packages.
	WritePackages
)

// pat is one personal access token the stand-in knows.
type pat struct {
	actions bool // a workflow's GITHUB_TOKEN (ghs_…), not a PAT
	user    string
	write   bool
	owners  []string // namespaces whose private packages it reaches; none: every one
	revoked bool
}

// tokenService issues and checks the stand-in's bearer tokens.
type tokenService struct {
	issuer, service string
	key             ed25519.PrivateKey
	kid             string // JWK thumbprint of key's public half

	mu       sync.Mutex
	pats     map[string]*pat // PAT → its grant
	public   map[string]bool // repository (owner/name) → public
	lifetime time.Duration
	// expires is each issued token's end (by jti) to the nanosecond: the
	// exp claim has whole seconds only, too coarse for a test of a
	// lifetime shorter than a push.
	expires map[string]time.Time

	issued   atomic.Int64 // tokens handed out
	rejected atomic.Int64 // requests refused for an expired token
}

func newTokenService(issuer, service string) (*tokenService, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &tokenService{
		issuer: issuer, service: service, key: key, kid: jwkThumbprint(pub),
		pats: map[string]*pat{}, public: map[string]bool{}, lifetime: 5 * time.Minute, expires: map[string]time.Time{},
	}, nil
}

// jwkThumbprint is RFC 7638's thumbprint of an Ed25519 key, as distribution
// computes it for the keys of its rootcertbundle (GetJWKThumbprint).
func jwkThumbprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(fmt.Appendf(nil, `{"crv":"Ed25519","kty":"OKP","x":"%s"}`, base64.RawURLEncoding.EncodeToString(pub)))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// rootCert is a self-signed certificate for the signing key: distribution's
// rootcertbundle, from which it learns the key (by its thumbprint).
func (s *tokenService) rootCert() ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "idopipe test token issuer"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	return x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.key.Public(), s.key)
}

// access is one entry of a token's access claim.
type access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// claims are the token's claims, as distribution reads them.
type claims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	Audience  string   `json:"aud"`
	Expires   int64    `json:"exp"`
	NotBefore int64    `json:"nbf"`
	IssuedAt  int64    `json:"iat"`
	ID        string   `json:"jti"`
	Access    []access `json:"access"`
	// Actions marks a token issued for a workflow's GITHUB_TOKEN, whose
	// refused writes GHCR words differently (distribution ignores it).
	Actions bool `json:"idopipe_actions,omitempty"`
}

// sign makes a compact JWS of c: header.payload.signature, EdDSA.
func (s *tokenService) sign(c claims) (string, error) {
	h, err := json.Marshal(map[string]string{"typ": "JWT", "alg": "EdDSA", "kid": s.kid})
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	return signing + "." + enc.EncodeToString(ed25519.Sign(s.key, []byte(signing))), nil
}

// parse checks the signature of a token this service issued and returns its
// claims (expired or not: the caller decides).
func (s *tokenService) parse(raw string) (claims, error) {
	var c claims
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return c, errors.New("malformed token")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !ed25519.Verify(s.key.Public().(ed25519.PublicKey), []byte(parts[0]+"."+parts[1]), sig) {
		return c, errors.New("bad signature")
	}
	p, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(p, &c)
}

// expired tells whether the token with claims c has run out.
func (s *tokenService) expired(c claims) bool {
	s.mu.Lock()
	end, ok := s.expires[c.ID]
	s.mu.Unlock()
	if !ok {
		end = time.Unix(c.Expires, 0)
	}
	return time.Now().After(end)
}

// grants tells whether c allows action on repository name.
func (c claims) grants(name, action string) bool {
	for _, a := range c.Access {
		if a.Type == "repository" && a.Name == name && (slices.Contains(a.Actions, action) || slices.Contains(a.Actions, "*")) {
			return true
		}
	}
	return false
}

// scope is one requested resource scope: repository:NAME:pull,push.
type scope struct {
	typ, name string
	actions   []string
}

// parseScopes reads every scope= parameter, each possibly several
// space-joined scopes (clients do both).
func parseScopes(params []string) []scope {
	var out []scope
	for _, p := range params {
		for _, f := range strings.Fields(p) {
			typ, rest, ok := strings.Cut(f, ":")
			i := strings.LastIndex(rest, ":")
			if !ok || i < 0 {
				continue
			}
			out = append(out, scope{typ: typ, name: rest[:i], actions: strings.Split(rest[i+1:], ",")})
		}
	}
	return out
}

// owner is the namespace of a repository: its first path component.
func owner(repo string) string {
	o, _, _ := strings.Cut(repo, "/")
	return o
}

// allowed is the actions p (nil: anonymous) may have on repo.
func (s *tokenService) allowed(p *pat, repo string) []string {
	public := s.public[repo]
	if p == nil {
		if public {
			return []string{"pull"}
		}
		return nil
	}
	member := len(p.owners) == 0 || slices.Contains(p.owners, owner(repo))
	var out []string
	if public || member {
		out = append(out, "pull")
	}
	if member && p.write {
		// GHCR answers a manifest DELETE with 405 whatever the token;
		// the stand-in lets a writer delete, as the suite's cleanups do.
		out = append(out, "push", "delete")
	}
	return out
}

// jsonError writes the registry's error body, {"errors":[{code, message}]}.
func jsonError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": code, "message": message}}})
	_, _ = w.Write(b)
}

// ServeHTTP answers /token as GHCR does (see the top of this file).
func (s *tokenService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		// GHCR: POST /token → 405 (open-component-model/ocm#400).
		w.Header().Set("Allow", http.MethodGet)
		jsonError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "method not allowed")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var p *pat
	subject, actions := "", false
	if user, pass, ok := r.BasicAuth(); ok {
		p = s.pats[pass]
		// A workflow's GITHUB_TOKEN goes with any username (the actor's).
		if p == nil || p.revoked || (!p.actions && !strings.EqualFold(p.user, user)) {
			// GHCR: unknown user, or a wrong, revoked or expired PAT.
			jsonError(w, http.StatusForbidden, "DENIED", "denied")
			return
		}
		subject, actions = p.user, p.actions
	}
	requested := parseScopes(r.URL.Query()["scope"])
	var grants []access
	for _, sc := range requested {
		if sc.typ != "repository" {
			continue // GHCR has no catalog: registry:catalog:* gets nothing
		}
		may := s.allowed(p, sc.name)
		var got []string
		for _, a := range sc.actions {
			if slices.Contains(may, a) || (a == "*" && len(may) > 0) {
				got = append(got, a)
			}
		}
		if len(got) > 0 {
			grants = append(grants, access{Type: "repository", Name: sc.name, Actions: got})
		}
	}
	if p == nil && len(requested) > 0 && len(grants) == 0 {
		// GHCR: anonymous for a private package → 401.
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Basic realm=%q`, s.service))
		jsonError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return
	}
	now := time.Now()
	end := now.Add(s.lifetime)
	id := randomHex(8)
	tok, err := s.sign(claims{
		Issuer: s.issuer, Subject: subject, Audience: s.service,
		Expires: end.Add(time.Second - 1).Unix(), NotBefore: now.Add(-time.Second).Unix(), IssuedAt: now.Unix(),
		ID: id, Access: grants, Actions: actions,
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.expires[id] = end
	s.issued.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"token": tok})
}

// addPAT makes a new PAT for user.
func (s *tokenService) addPAT(user string, sc PackageScope, owners []string) string {
	return s.add("ghp_idopipeTEST", &pat{user: user, write: sc == WritePackages}, owners)
}

// add records a new token with prefix (recognisable in leak greps) for p.
func (s *tokenService) add(prefix string, p *pat, owners []string) string {
	tok := prefix + randomHex(16)
	low := make([]string, len(owners))
	for i, o := range owners {
		low[i] = strings.ToLower(o)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p.owners = low
	s.pats[tok] = p
	return tok
}
