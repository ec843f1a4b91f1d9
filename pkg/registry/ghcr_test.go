package registry

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/fail"
)

// GHCR's answers, status and body as GHCR sends them (from the reports of
// its users in docker/build-push-action, docker/login-action and others).
// The end-to-end tests (TestFakeGHCR*) send the same through a proxy in
// front of the real registry.
var ghcrAnswers = []struct {
	name   string
	status int
	body   string
	class  fail.Class
	want   []string
}{
	{"GITHUB_TOKEN without packages: write", 403,
		`{"errors":[{"code":"DENIED","message":"installation not allowed to Write organization package"}]}`,
		fail.Credentials, []string{"GITHUB_TOKEN may not write packages", "permissions: packages: write"}},
	{"new package, organisation forbids it", 403,
		`{"errors":[{"code":"DENIED","message":"installation not allowed to Create organization package"}]}`,
		fail.Credentials, []string{"GITHUB_TOKEN may not write packages", "permissions: packages: write"}},
	{"package pushed by hand", 403,
		`{"errors":[{"code":"DENIED","message":"permission_denied: write_package"}]}`,
		fail.Credentials, []string{"no write access", "Manage Actions access", "Write role"}},
	{"another repository's package", 403,
		`{"errors":[{"code":"DENIED","message":"installation not allowed to Read organization package"}]}`,
		fail.Credentials, []string{"belongs to another repository", "Manage Actions access", "make the package public"}},
	{"classic token without write:packages", 403,
		`{"errors":[{"code":"DENIED","message":"permission_denied: The token provided does not match expected scopes."}]}`,
		fail.Credentials, []string{"lacks the write:packages scope"}},
	{"bad or expired token", 401,
		`{"errors":[{"code":"UNAUTHORIZED","message":"unauthenticated: User cannot be authenticated with the token provided."}]}`,
		fail.Credentials, []string{"cannot authenticate the token from $GITHUB_TOKEN", "wrong, revoked or expired", "401"}},
	{"invalid token", 403,
		`{"errors":[{"code":"DENIED","message":"invalid token"}]}`,
		fail.Credentials, []string{"refused the token from $GITHUB_TOKEN as invalid", `403 "invalid token"`}},
	{"secondary rate limit", 403,
		`{"errors":[{"code":"DENIED","message":"permission_denied: Error from intermediary with HTTP status code 403 \"Forbidden\" - with-body: {\n  \"message\": \"You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 9055:2E795C:1F5BEB:235307:6A79DADE.\"\n}"}]}`,
		fail.RateLimit, []string{"GitHub's secondary rate limit", `"You have exceeded a secondary rate limit."`, "not a credentials problem", "after retries"}},
	{"429", 429,
		`{"errors":[{"code":"TOOMANYREQUESTS","message":"retry-after: 1.889377ms, allowed: 2000/minute"}]}`,
		fail.RateLimit, []string{"rate-limited", "429"}},
	{"another 403", 403, `{"errors":[{"code":"DENIED","message":"denied"}]}`,
		fail.Credentials, []string{"403 denied"}},
}

// registryError is what go-containerregistry makes of a response.
func registryError(t *testing.T, status int, body string) error {
	t.Helper()
	u, _ := url.Parse("https://ghcr.io/v2/my-org/planner/blobs/uploads/")
	resp := &http.Response{StatusCode: status, Status: http.StatusText(status), Body: io.NopCloser(strings.NewReader(body)),
		Request: &http.Request{Method: http.MethodPost, URL: u}, Header: http.Header{"Content-Type": {"application/json"}}}
	err := transport.CheckError(resp, http.StatusAccepted)
	if err == nil {
		t.Fatal("no error")
	}
	return err
}

func TestExplainGHCR(t *testing.T) {
	ref := name.MustParseReference("ghcr.io/my-org/planner:0.4.0")
	c := &creds.Credentials{Username: "me", Token: creds.NewSecret("ghp_secretTOKEN"), Source: "$GITHUB_TOKEN"}
	seen := map[string]string{}
	for _, tc := range ghcrAnswers {
		t.Run(tc.name, func(t *testing.T) {
			raw := registryError(t, tc.status, tc.body)
			err := Access{Creds: c}.Explain(raw, "push", ref)
			msg := err.Error()
			if fail.ClassOf(err) != tc.class || strings.Contains(msg, "\n") {
				t.Errorf("%q: class %s, want %s, one line", msg, fail.ClassOf(err), tc.class)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q does not say %q", msg, w)
				}
			}
			if !strings.Contains(msg, "ghcr.io/my-org/planner:0.4.0") {
				t.Errorf("%q does not name the image", msg)
			}
			var te *transport.Error
			if !errors.As(err, &te) || te.StatusCode != tc.status {
				t.Errorf("the registry's error is not the cause: %#v", err)
			}
			if other, dup := seen[msg]; dup {
				t.Errorf("%s and %s read the same: %q", tc.name, other, msg)
			}
			seen[msg] = tc.name
			if got := retryable(raw); got != (tc.class == fail.RateLimit) {
				t.Errorf("retryable = %v", got)
			}
		})
	}
}

// TestExplainAnonymous: a private package refused to an anonymous pull
// says so, and how to pull it.
func TestExplainAnonymous(t *testing.T) {
	ref := name.MustParseReference("ghcr.io/my-org/planner:0.4.0")
	for _, status := range []int{401, 403} {
		err := Access{}.Explain(registryError(t, status, `{"errors":[{"code":"DENIED","message":"denied"}]}`), "pull", ref)
		if msg := err.Error(); fail.ClassOf(err) != fail.Credentials || !strings.Contains(msg, "rejected anonymous for pull of ghcr.io/my-org/planner:0.4.0") ||
			!strings.Contains(msg, "package ghcr.io/my-org/planner is private") || !strings.Contains(msg, "make the package public") {
			t.Errorf("%d: %q", status, msg)
		}
	}
}

// TestExplainTokenEndpoint: GHCR's token endpoint refusing the PAT (403
// denied, as go-containerregistry reports it from GET /token) says that the
// credentials were refused, with the fix, for every operation; the same 403
// from the API is not read as one.
func TestExplainTokenEndpoint(t *testing.T) {
	ref := name.MustParseReference("ghcr.io/my-org/planner:0.4.0")
	c := &creds.Credentials{Username: "me", Token: creds.NewSecret("ghp_secretTOKEN"), Source: "$GITHUB_TOKEN"}
	u, _ := url.Parse("https://ghcr.io/token?scope=repository%3Amy-org%2Fplanner%3Apull%2Cpush&service=ghcr.io")
	resp := &http.Response{StatusCode: 403, Body: io.NopCloser(strings.NewReader(`{"errors":[{"code":"DENIED","message":"denied"}]}`)),
		Request: &http.Request{Method: http.MethodGet, URL: u}, Header: http.Header{"Content-Type": {"application/json"}}}
	raw := transport.CheckError(resp, http.StatusOK)
	for _, op := range []string{"push", "pull"} {
		err := Access{Creds: c}.Explain(raw, op, ref)
		msg := err.Error()
		for _, w := range []string{"registry ghcr.io refused the credentials (the token from $GITHUB_TOKEN) at its token endpoint, before the " + op + " of ghcr.io/my-org/planner:0.4.0",
			`(403 "denied")`, "wrong, revoked or expired", "create a new classic token"} {
			if !strings.Contains(msg, w) {
				t.Errorf("%q does not say %q", msg, w)
			}
		}
		if fail.ClassOf(err) != fail.Credentials || strings.Contains(msg, "secretTOKEN") {
			t.Errorf("%q: class %s", msg, fail.ClassOf(err))
		}
	}
	if msg := (Access{Creds: c}).Explain(registryError(t, 403, `{"errors":[{"code":"DENIED","message":"denied"}]}`), "push", ref).Error(); strings.Contains(msg, "token endpoint") {
		t.Errorf("an API 403 read as the token endpoint's: %q", msg)
	}
}

// TestExplainActionsTokenScopes: GHCR's scope refusal of a workflow's
// GITHUB_TOKEN (ghs_…) names the job's permissions, not a classic token.
func TestExplainActionsTokenScopes(t *testing.T) {
	ref := name.MustParseReference("ghcr.io/my-org/planner:0.4.0")
	body := `{"errors":[{"code":"DENIED","message":"permission_denied: The token provided does not match expected scopes."}]}`
	actions := &creds.Credentials{Username: "me", Token: creds.NewSecret("ghs_installationTOKEN"), Source: "$GITHUB_TOKEN"}
	msg := Access{Creds: actions}.Explain(registryError(t, 403, body), "push", ref).Error()
	if !strings.Contains(msg, "a workflow's GITHUB_TOKEN, may not write packages") || !strings.Contains(msg, "permissions: packages: write") || strings.Contains(msg, "classic token") {
		t.Errorf("%q", msg)
	}
	msg = Access{Creds: actions}.Explain(registryError(t, 403, `{"errors":[{"code":"DENIED","message":"permission_denied: write_package"}]}`), "push", ref).Error()
	if !strings.Contains(msg, "a workflow's GITHUB_TOKEN, may not write package ghcr.io/my-org/planner") || !strings.Contains(msg, "permissions: packages: write") ||
		!strings.Contains(msg, "Manage Actions access") || strings.Contains(msg, "pushed by hand") {
		t.Errorf("%q", msg)
	}
}

// TestExplainTokenEndpointDown: a token endpoint that fails (503) is a
// registry problem naming the endpoint and the status, not a refusal of
// the credentials.
func TestExplainTokenEndpointDown(t *testing.T) {
	ref := name.MustParseReference("ghcr.io/my-org/planner:0.4.0")
	c := &creds.Credentials{Username: "me", Token: creds.NewSecret("ghp_secretTOKEN"), Source: "$GITHUB_TOKEN"}
	u, _ := url.Parse("https://ghcr.io/token?scope=repository%3Amy-org%2Fplanner%3Apull&service=ghcr.io")
	resp := &http.Response{StatusCode: 503, Body: io.NopCloser(strings.NewReader(`{"errors":[{"code":"UNAVAILABLE","message":"down for maintenance"}]}`)),
		Request: &http.Request{Method: http.MethodGet, URL: u}, Header: http.Header{"Content-Type": {"application/json"}}}
	err := Access{Creds: c}.Explain(transport.CheckError(resp, http.StatusOK), "push", ref)
	if msg := err.Error(); fail.ClassOf(err) != fail.Registry || !strings.Contains(msg, "refused the push of ghcr.io/my-org/planner:0.4.0 at its token endpoint (503 Service Unavailable)") {
		t.Errorf("%s %q", fail.ClassOf(err), msg)
	}
}
