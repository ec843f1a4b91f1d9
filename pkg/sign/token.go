package sign

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/idopipe/idopipe/pkg/fail"
)

// SigstoreAudience is the audience Fulcio takes an OIDC token for.
const SigstoreAudience = "sigstore"

// fixPermission is what makes the GitHub Actions runner hand out tokens.
const fixPermission = "add `permissions: id-token: write` to the job"

// TokenSource hands out OIDC identity tokens for Fulcio.
type TokenSource interface {
	// Token is a fresh token each call (GitHub's expire in minutes).
	Token(ctx context.Context) (string, error)
	// String says where tokens come from, for messages: "GitHub Actions
	// OIDC", "file tok.jwt", "$SIGSTORE_ID_TOKEN". Never the token.
	String() string
}

// TokenFile reads the token from path at each call (a file another
// process keeps fresh works).
func TokenFile(path string) TokenSource { return tokenFile(path) }

type tokenFile string

func (f tokenFile) String() string { return "file " + string(f) }

func (f tokenFile) Token(context.Context) (string, error) {
	b, err := os.ReadFile(string(f))
	if err != nil {
		return "", fail.Wrap(fail.Credentials, errors.Unwrap(err), "check the identity token file's path", "cannot read the OIDC token %s", f)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fail.New(fail.Credentials, "write the OIDC token (a JWT with audience sigstore) into it", "the OIDC token file %s is empty", f)
	}
	return tok, nil
}

// TokenValue is a token read from the environment variable named from.
func TokenValue(from, token string) TokenSource { return tokenValue{from: from, token: token} }

type tokenValue struct{ from, token string }

func (v tokenValue) String() string { return "$" + v.from }

func (v tokenValue) Token(context.Context) (string, error) {
	if strings.TrimSpace(v.token) == "" {
		return "", fail.New(fail.Credentials, "set it to an OIDC token (a JWT with audience sigstore)", "$%s is empty", v.from)
	}
	return strings.TrimSpace(v.token), nil
}

// GitHubActionsToken asks the GitHub Actions runner for a token with
// audience sigstore: a GET of requestURL (ACTIONS_ID_TOKEN_REQUEST_URL)
// with &audience=sigstore and requestToken (ACTIONS_ID_TOKEN_REQUEST_TOKEN)
// as bearer. Both are set only for a job with `permissions: id-token:
// write`. client nil: http.DefaultClient.
func GitHubActionsToken(requestURL, requestToken string, client *http.Client) TokenSource {
	if client == nil {
		client = http.DefaultClient
	}
	return actionsToken{url: requestURL, token: requestToken, client: client}
}

type actionsToken struct {
	url, token string
	client     *http.Client
}

func (a actionsToken) String() string { return "GitHub Actions OIDC" }

func (a actionsToken) Token(ctx context.Context) (string, error) {
	if a.url == "" || a.token == "" {
		return "", fail.New(fail.Credentials, fixPermission,
			"no OIDC token: the GitHub Actions runner did not set ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN")
	}
	u, err := url.Parse(a.url)
	if err != nil || u.Host == "" {
		return "", fail.New(fail.Credentials, fixPermission, "no OIDC token: ACTIONS_ID_TOKEN_REQUEST_URL is not a URL")
	}
	q := u.Query()
	q.Set("audience", SigstoreAudience)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fail.Wrap(fail.Internal, err, "", "GitHub Actions OIDC request")
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Accept", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		// The URL carries no secret, but keep the message to its host.
		return "", fail.WithCause(fail.Credentials, err, fixPermission,
			"cannot get an OIDC token from the GitHub Actions runner (%s): %s", u.Host, transportCause(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fail.New(fail.Credentials, fixPermission,
			"the GitHub Actions runner (%s) refused an OIDC token: %s", u.Host, resp.Status)
	}
	var v struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Value == "" {
		return "", fail.New(fail.Credentials, fixPermission, "the GitHub Actions runner (%s) answered no OIDC token", u.Host)
	}
	return v.Value, nil
}

// transportCause is a transport error without the URL (which net/http
// puts in front).
func transportCause(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// Claims is what an OIDC token says, read without checking its signature
// (Fulcio checks it).
type Claims struct {
	Issuer   string    `json:"issuer"`
	Subject  string    `json:"subject"`
	Audience []string  `json:"audience"`
	Expiry   time.Time `json:"expiry"`
	// GitHub Actions' claims.
	Repository, Ref, Workflow string
	JobWorkflowRef            string // owner/repo/.github/workflows/file.yml@ref: the certificate's SAN
	Email                     string
}

// SAN is the Subject Alternative Name Fulcio puts in a certificate for
// this token: https://github.com/{job_workflow_ref} for GitHub Actions,
// the e-mail address for an e-mail token, else the subject.
func (c Claims) SAN() string {
	switch {
	case c.JobWorkflowRef != "":
		return githubURL + c.JobWorkflowRef
	case c.Email != "":
		return c.Email
	default:
		return c.Subject
	}
}

// ParseClaims reads the claims of a JWT without checking its signature.
func ParseClaims(token string) (Claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Claims{}, errors.New("not a JWT (three dot-separated parts)")
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return Claims{}, errors.New("not a JWT (its payload is not base64url)")
	}
	var raw struct {
		Iss            string          `json:"iss"`
		Sub            string          `json:"sub"`
		Aud            json.RawMessage `json:"aud"`
		Exp            json.Number     `json:"exp"`
		Repository     string          `json:"repository"`
		Ref            string          `json:"ref"`
		Workflow       string          `json:"workflow"`
		JobWorkflowRef string          `json:"job_workflow_ref"`
		Email          string          `json:"email"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return Claims{}, errors.New("not a JWT (its payload is not a JSON object)")
	}
	c := Claims{Issuer: raw.Iss, Subject: raw.Sub, Repository: raw.Repository, Ref: raw.Ref, Workflow: raw.Workflow,
		JobWorkflowRef: raw.JobWorkflowRef, Email: raw.Email}
	var one string
	if err := json.Unmarshal(raw.Aud, &one); err == nil {
		c.Audience = []string{one}
	} else {
		_ = json.Unmarshal(raw.Aud, &c.Audience)
	}
	if raw.Exp != "" {
		f, err := raw.Exp.Float64()
		if err != nil {
			return Claims{}, errors.New("its exp claim is not a number")
		}
		c.Expiry = time.Unix(int64(f), 0).UTC()
	}
	return c, nil
}

// CheckToken gets one token from ts and checks it offline, before anything
// is built: it is a JWT, not expired at now, for audience sigstore, from
// an issuer. Errors are of class fail.Credentials and say the fix; they
// never show the token.
func CheckToken(ctx context.Context, ts TokenSource, now time.Time) (Claims, error) {
	tok, err := ts.Token(ctx)
	if err != nil {
		return Claims{}, err
	}
	return checkClaims(ts, tok, now)
}

func checkClaims(ts TokenSource, tok string, now time.Time) (Claims, error) {
	c, err := ParseClaims(tok)
	if err != nil {
		return c, fail.New(fail.Credentials, "give an OIDC identity token (a JWT)", "the OIDC token from %s is %v", ts, err)
	}
	if c.Issuer == "" {
		return c, fail.New(fail.Credentials, "give an OIDC identity token (a JWT with iss, sub, aud and exp)", "the OIDC token from %s names no issuer", ts)
	}
	if c.Expiry.IsZero() {
		return c, fail.New(fail.Credentials, "give an OIDC identity token (a JWT with iss, sub, aud and exp)", "the OIDC token from %s has no expiry", ts)
	}
	if !now.Before(c.Expiry) {
		fix := "get a fresh token"
		if _, ok := ts.(actionsToken); !ok {
			fix += " (GitHub's last minutes: in Actions, let idopipe ask the runner for one with `permissions: id-token: write`)"
		}
		return c, fail.New(fail.Credentials, fix, "the OIDC token from %s expired at %s: %s ago",
			ts, c.Expiry.Format(time.RFC3339), now.Sub(c.Expiry).Round(time.Second))
	}
	if !slices.Contains(c.Audience, SigstoreAudience) {
		return c, fail.New(fail.Credentials, "request the token with audience sigstore",
			"the OIDC token from %s is not for Fulcio: its audience is %s, Fulcio takes only %s", ts, audience(c.Audience), SigstoreAudience)
	}
	return c, nil
}

func audience(a []string) string {
	if len(a) == 0 {
		return "(none)"
	}
	return strings.Join(a, ", ")
}

// String is the claims as messages show them (no token).
func (c Claims) String() string {
	return fmt.Sprintf("%s (issuer %s, expires %s)", c.SAN(), c.Issuer, c.Expiry.Format(time.RFC3339))
}
