package testenv

import (
	"cmp"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The OIDC issuer GitHub Actions would be (token.actions.githubusercontent.com),
// on loopback: the discovery document, the JWKS and RS256 ID tokens with
// every claim GitHub's carry (Fulcio's github-workflow type refuses a token
// lacking any of job_workflow_ref, sha, event_name, repository, workflow,
// ref, job_workflow_sha, runner_environment, repository_id,
// repository_owner, repository_owner_id, repository_visibility,
// workflow_ref, workflow_sha, run_id, run_attempt), and the runner's token
// request endpoint (ACTIONS_ID_TOKEN_REQUEST_URL + _TOKEN): GET with
// `&audience=X` and `Authorization: bearer <request token>` answers
// {"value": "<jwt>"}; a wrong request token gets 403.

// GitHubClaims describes one workflow run's token. Zero fields get
// GitHub-shaped defaults (see withDefaults).
type GitHubClaims struct {
	Repository   string // owner/name; default "idopipe-test/app"
	RepositoryID string // default derived from Repository
	OwnerID      string // repository_owner_id; default derived from the owner
	Ref          string // default "refs/heads/main"
	SHA          string // the commit; default derived from Repository and Ref
	// Workflow is the workflow file's path in the repository; default
	// ".github/workflows/release.yml". workflow_ref is
	// Repository/Workflow@Ref.
	Workflow string
	// WorkflowName is the `workflow` claim (the workflow's name:); default
	// the file name without its extension.
	WorkflowName string
	// JobWorkflowRef is the workflow that runs the job, as
	// owner/repo/path@ref: a reusable workflow's when it differs; default
	// workflow_ref. The certificate's SAN is https://github.com/JobWorkflowRef.
	JobWorkflowRef string
	JobWorkflowSHA string // default SHA
	EventName      string // default "push"
	Visibility     string // repository_visibility; default "private"
	Environment    string // the job's environment; "" for none
	RunnerEnv      string // runner_environment; default "github-hosted"
	Actor          string // default the owner
	RunID          string // default a fixed number
	RunAttempt     string // default "1"
	Audience       string // default "sigstore"
	// Lifetime is how long the token is valid; default 5 minutes, as
	// GitHub's.
	Lifetime time.Duration
	// IssuedAt is the token's iat (and nbf); zero: now. A past time with a
	// short Lifetime gives an expired token.
	IssuedAt time.Time
	// Omit lists claims to leave out (e.g. "job_workflow_sha"), to see a
	// client or Fulcio refuse the token.
	Omit []string
}

// withDefaults fills the zero fields as GitHub would.
func (c GitHubClaims) withDefaults() GitHubClaims {
	c.Repository = cmp.Or(c.Repository, "idopipe-test/app")
	owner, _, _ := strings.Cut(c.Repository, "/")
	c.RepositoryID = cmp.Or(c.RepositoryID, numberOf("repo:"+c.Repository))
	c.OwnerID = cmp.Or(c.OwnerID, numberOf("owner:"+owner))
	c.Ref = cmp.Or(c.Ref, "refs/heads/main")
	if c.SHA == "" {
		sum := sha256.Sum256([]byte(c.Repository + "@" + c.Ref))
		c.SHA = fmt.Sprintf("%x", sum[:20])
	}
	c.Workflow = cmp.Or(c.Workflow, ".github/workflows/release.yml")
	c.WorkflowName = cmp.Or(c.WorkflowName, strings.TrimSuffix(path.Base(c.Workflow), path.Ext(c.Workflow)))
	c.JobWorkflowRef = cmp.Or(c.JobWorkflowRef, c.workflowRef())
	c.JobWorkflowSHA = cmp.Or(c.JobWorkflowSHA, c.SHA)
	c.EventName = cmp.Or(c.EventName, "push")
	c.Visibility = cmp.Or(c.Visibility, "private")
	c.RunnerEnv = cmp.Or(c.RunnerEnv, "github-hosted")
	c.Actor = cmp.Or(c.Actor, owner)
	c.RunID = cmp.Or(c.RunID, "4242424242")
	c.RunAttempt = cmp.Or(c.RunAttempt, "1")
	c.Audience = cmp.Or(c.Audience, "sigstore")
	if c.Lifetime == 0 {
		c.Lifetime = 5 * time.Minute
	}
	return c
}

func (c GitHubClaims) workflowRef() string { return c.Repository + "/" + c.Workflow + "@" + c.Ref }

// SAN is the subject alternative name Fulcio writes into the certificate
// of a token with these claims: https://github.com/<job_workflow_ref>.
func (c GitHubClaims) SAN() string {
	return "https://github.com/" + c.withDefaults().JobWorkflowRef
}

// numberOf is a stable decimal id for s, as GitHub's numeric ids look.
func numberOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return strconv.FormatUint(uint64(sum[0])<<24|uint64(sum[1])<<16|uint64(sum[2])<<8|uint64(sum[3])+1000000, 10)
}

// subject is GitHub's sub claim: repo:O/R:environment:E, repo:O/R:pull_request
// or repo:O/R:ref:REF.
func (c GitHubClaims) subject() string {
	switch {
	case c.Environment != "":
		return "repo:" + c.Repository + ":environment:" + c.Environment
	case c.EventName == "pull_request" || c.EventName == "pull_request_target":
		return "repo:" + c.Repository + ":pull_request"
	default:
		return "repo:" + c.Repository + ":ref:" + c.Ref
	}
}

// claimSet is the token's payload, with every claim GitHub puts in.
func (c GitHubClaims) claimSet(issuer string, now time.Time) map[string]any {
	c = c.withDefaults()
	if !c.IssuedAt.IsZero() {
		now = c.IssuedAt
	}
	owner, _, _ := strings.Cut(c.Repository, "/")
	refType := "branch"
	if strings.HasPrefix(c.Ref, "refs/tags/") {
		refType = "tag"
	}
	m := map[string]any{
		"iss":                   issuer,
		"aud":                   c.Audience,
		"sub":                   c.subject(),
		"jti":                   randomHex(16),
		"iat":                   now.Unix(),
		"nbf":                   now.Unix(),
		"exp":                   now.Add(c.Lifetime).Unix(),
		"ref":                   c.Ref,
		"ref_type":              refType,
		"ref_protected":         "false",
		"sha":                   c.SHA,
		"repository":            c.Repository,
		"repository_id":         c.RepositoryID,
		"repository_owner":      owner,
		"repository_owner_id":   c.OwnerID,
		"repository_visibility": c.Visibility,
		"actor":                 c.Actor,
		"actor_id":              numberOf("actor:" + c.Actor),
		"workflow":              c.WorkflowName,
		"workflow_ref":          c.workflowRef(),
		"workflow_sha":          c.SHA,
		"job_workflow_ref":      c.JobWorkflowRef,
		"job_workflow_sha":      c.JobWorkflowSHA,
		"event_name":            c.EventName,
		"head_ref":              "",
		"base_ref":              "",
		"run_id":                c.RunID,
		"run_number":            "1",
		"run_attempt":           c.RunAttempt,
		"runner_environment":    c.RunnerEnv,
	}
	if c.Environment != "" {
		m["environment"] = c.Environment
	}
	for _, k := range c.Omit {
		delete(m, k)
	}
	return m
}

// Issuer is the GitHub-shaped OIDC issuer, served from this process on
// loopback.
type Issuer struct {
	URL string // http://127.0.0.1:PORT, the iss of its tokens

	key *rsa.PrivateKey
	kid string
	srv *http.Server
	ln  net.Listener

	mu       sync.Mutex
	requests map[string]GitHubClaims // request token → the claims of its tokens
	issued   int
}

// startIssuer serves the issuer on a fresh loopback port.
func startIssuer() (*Issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	is := &Issuer{URL: "http://" + ln.Addr().String(), key: key, ln: ln, requests: map[string]GitHubClaims{}}
	der := key.PublicKey.N.Bytes()
	sum := sha256.Sum256(der)
	is.kid = fmt.Sprintf("%X", sum[:20])
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", is.discovery)
	mux.HandleFunc("GET /.well-known/jwks", is.jwks)
	mux.HandleFunc("GET /_apis/distributedtask/hubs/Actions/plans/{plan}/jobs/{job}/idtoken", is.request)
	is.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = is.srv.Serve(ln) }()
	return is, nil
}

// Stop ends the issuer's server.
func (is *Issuer) Stop() {
	if is != nil && is.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = is.srv.Shutdown(ctx)
	}
}

// discovery is GitHub's /.well-known/openid-configuration, with this
// issuer's URLs.
func (is *Issuer) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                is.URL,
		"jwks_uri":                              is.URL + "/.well-known/jwks",
		"subject_types_supported":               []string{"public", "pairwise"},
		"response_types_supported":              []string{"id_token"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"scopes_supported":                      []string{"openid"},
		"claims_supported": []string{"sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "sha", "repository", "repository_id",
			"repository_owner", "repository_owner_id", "run_id", "run_number", "run_attempt", "actor", "actor_id", "workflow",
			"workflow_ref", "workflow_sha", "head_ref", "base_ref", "event_name", "ref_type", "ref_protected", "environment",
			"job_workflow_ref", "job_workflow_sha", "repository_visibility", "runner_environment"},
	})
}

// jwks is the issuer's key set: its one RSA key.
func (is *Issuer) jwks(w http.ResponseWriter, _ *http.Request) {
	enc := base64.RawURLEncoding
	writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "alg": "RS256", "use": "sig", "kid": is.kid,
		"n": enc.EncodeToString(is.key.PublicKey.N.Bytes()),
		"e": enc.EncodeToString(big.NewInt(int64(is.key.PublicKey.E)).Bytes()),
	}}})
}

// request is the runner's token request endpoint: the bearer request
// token selects the claims; ?audience= sets aud (GitHub's default without
// it is the owner's URL).
func (is *Issuer) request(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || tok == "" {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "no bearer request token"})
		return
	}
	is.mu.Lock()
	c, known := is.requests[tok]
	is.mu.Unlock()
	if !known {
		writeJSON(w, http.StatusForbidden, map[string]string{"message": "the request token is not valid for this job"})
		return
	}
	c = c.withDefaults()
	if aud := r.URL.Query().Get("audience"); aud != "" {
		c.Audience = aud
	} else {
		owner, _, _ := strings.Cut(c.Repository, "/")
		c.Audience = "https://github.com/" + owner
	}
	jwt, err := is.sign(c.claimSet(is.URL, time.Now()))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"message": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"value": jwt})
}

// Token is an ID token for c, as the runner hands it out.
func (is *Issuer) Token(c GitHubClaims) (string, error) {
	return is.sign(c.claimSet(is.URL, time.Now()))
}

// ActionsRequest registers a job whose token requests get tokens with c
// and returns its ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN. The URL already
// has a query, so clients append "&audience=…" as they do on GitHub.
func (is *Issuer) ActionsRequest(c GitHubClaims) (url, requestToken string) {
	requestToken = randomHex(24)
	is.mu.Lock()
	is.requests[requestToken] = c
	is.mu.Unlock()
	return fmt.Sprintf("%s/_apis/distributedtask/hubs/Actions/plans/%s/jobs/%s/idtoken?api-version=2.0", is.URL, randomHex(8), randomHex(8)), requestToken
}

// sign makes a compact RS256 JWS of claims.
func (is *Issuer) sign(claims map[string]any) (string, error) {
	h, err := json.Marshal(map[string]string{"typ": "JWT", "alg": "RS256", "kid": is.kid, "x5t": is.kid})
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, is.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	is.mu.Lock()
	is.issued++
	is.mu.Unlock()
	return signing + "." + enc.EncodeToString(sig), nil
}

// Issued counts the tokens handed out so far.
func (is *Issuer) Issued() int {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.issued
}

// check waits until the discovery document answers.
func (is *Issuer) check(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, is.URL+"/.well-known/openid-configuration", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New("discovery answered " + resp.Status)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
