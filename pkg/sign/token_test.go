package sign_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
	"github.com/idopipe/idopipe/pkg/sign"
)

// TestCheckToken: a good token's claims are read (no signature check);
// an expired token, a wrong audience, missing or failing GitHub Actions
// request variables, an empty variable, a missing file and a non-JWT each
// give one line of class Credentials naming the cause and the fix, and
// never the token.
func TestCheckToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFakeSigstore(t)
	now := time.Now()
	good := f.token(githubClaims("o/r", "release.yml", "refs/tags/v1"))

	c, err := sign.CheckToken(ctx, sign.TokenValue("SIGSTORE_ID_TOKEN", good), now)
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != githubIssuer || c.Repository != "o/r" || c.Ref != "refs/tags/v1" || c.SAN() != releaseSAN || len(c.Audience) != 1 || c.Expiry.Before(now) {
		t.Errorf("claims %+v", c)
	}

	check := func(what string, ts sign.TokenSource, at time.Time, words ...string) {
		t.Helper()
		_, err := sign.CheckToken(ctx, ts, at)
		wantClass(t, err, fail.Credentials, words...)
		if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), good[:20]) || strings.Contains(err.Error(), "secret-request-token") {
			t.Errorf("%s: not one line, or shows a token: %q", what, err)
		}
	}
	check("expired", sign.TokenValue("SIGSTORE_ID_TOKEN", good), now.Add(time.Hour), "$SIGSTORE_ID_TOKEN", "expired at "+c.Expiry.Format(time.RFC3339), "fresh token")
	aud := githubClaims("o/r", "release.yml", "refs/tags/v1")
	aud["aud"] = "https://github.com/o"
	check("audience", sign.TokenValue("T", f.token(aud)), now, "its audience is https://github.com/o, Fulcio takes only sigstore", "audience sigstore")
	check("no variables", sign.GitHubActionsToken("", "", nil), now, "ACTIONS_ID_TOKEN_REQUEST_URL", "permissions: id-token: write")
	check("empty variable", sign.TokenValue("SIGSTORE_ID_TOKEN", " "), now, "$SIGSTORE_ID_TOKEN is empty")
	check("missing file", sign.TokenFile(filepath.Join(t.TempDir(), "tok.jwt")), now, "tok.jwt")
	notJWT := filepath.Join(t.TempDir(), "tok.jwt")
	if err := os.WriteFile(notJWT, []byte("secret-request-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("not a JWT", sign.TokenFile(notJWT), now, "file "+notJWT, "not a JWT")

	// The runner's endpoint: GET with audience=sigstore and the bearer.
	var gotAudience, gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAudience, gotAuth = r.URL.Query().Get("audience"), r.Header.Get("Authorization")
		if gotAuth != "Bearer secret-request-token" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		_, _ = w.Write([]byte(`{"count":1,"value":"` + good + `"}`))
	}))
	defer srv.Close()
	reqURL := srv.URL + "/token?api-version=2.0"
	c, err = sign.CheckToken(ctx, sign.GitHubActionsToken(reqURL, "secret-request-token", srv.Client()), now)
	if err != nil || c.SAN() != releaseSAN || gotAudience != "sigstore" {
		t.Fatalf("Actions token: %+v %v (audience %q)", c, err, gotAudience)
	}
	check("refused", sign.GitHubActionsToken(reqURL, "wrong-token", srv.Client()), now, "refused an OIDC token", "403", "permissions: id-token: write")
	srv.Close()
	check("unreachable", sign.GitHubActionsToken(reqURL, "secret-request-token", nil), now, "cannot get an OIDC token", "permissions: id-token: write")
}

// TestPolicyWording: what Policy.String and Identity.Validate say.
func TestPolicyWording(t *testing.T) {
	t.Parallel()
	_, k, _ := keyPair(t)
	id := sign.Identity{Owner: "o"}
	for _, tc := range []struct {
		p    sign.Policy
		want string
	}{
		{sign.Policy{Keys: []sign.Key{k}}, "key " + k.String()},
		{sign.Policy{Identity: &id}, "a certificate for SAN ~ (?i)^https://github.com/o/ issued by https://token.actions.githubusercontent.com from owner https://github.com/o"},
		{sign.Policy{Identity: &sign.Identity{Subject: releaseSAN, IssuerRegexp: "^https://x"}}, "a certificate for SAN " + releaseSAN + " issued by ~ ^https://x"},
		{sign.Policy{Keys: []sign.Key{k}, Identity: &sign.Identity{Repo: "o/r", SignerWorkflow: "o/r/.github/workflows/release.yml"}},
			"key " + k.String() + " or a certificate for SAN ~ ^https://github.com/o/r/.github/workflows/release.yml issued by https://token.actions.githubusercontent.com from repository https://github.com/o/r"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
	if !(sign.Policy{}).Empty() || (sign.Policy{Identity: &id}).Empty() {
		t.Error("Empty")
	}
	for _, tc := range []struct {
		id   sign.Identity
		word string
	}{
		{sign.Identity{}, "names no signer"},
		{sign.Identity{Issuer: githubIssuer}, "names no signer"},
		{sign.Identity{Subject: "a", SubjectRegexp: "b"}, "not both"},
		{sign.Identity{SubjectRegexp: "("}, "does not compile"},
		{sign.Identity{Owner: "o", IssuerRegexp: "["}, "does not compile"},
		{sign.Identity{Repo: "r"}, "OWNER/NAME"},
		{sign.Identity{Owner: "a", Repo: "b/r"}, "not the owner"},
		{sign.Identity{SignerWorkflow: "release.yml"}, "OWNER/NAME/.github/workflows/FILE"},
	} {
		err := tc.id.Validate()
		wantClass(t, err, fail.Usage, tc.word)
		if strings.Contains(err.Error(), "--") {
			t.Errorf("%q names a flag", err)
		}
	}
	if err := (sign.Identity{Owner: "o"}).Validate(); err != nil {
		t.Error(err)
	}
	if _, err := sign.KnownInstance("elsewhere"); fail.ClassOf(err) != fail.Usage {
		t.Errorf("unknown instance: %v", err)
	}
	for _, n := range []string{"public-good", "github"} {
		if i, err := sign.KnownInstance(n); err != nil || i.FulcioURL == "" || (i.RekorURL == "" && i.TSAURL == "") {
			t.Errorf("%s: %+v %v", n, i, err)
		}
	}
}

// TestServicesDown: Fulcio or the timestamp authority failing while
// signing fails the signing with class Sigstore, naming the service's URL
// and what it answered, the image pushed but not signed; once the service
// is back, a rerun completes the signatures and they verify.
func TestServicesDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := newMemRegistry(t, false)
	f := newFakeSigstore(t)
	s := f.signer(t, sign.TokenValue("T", f.token(githubClaims("o/r", "release.yml", "refs/tags/v1"))))
	ref, _ := pushIndexTo(t, reg, "o/planner:down")

	f.set(func(f *fakeSigstore) { f.fulcioDown = true })
	_, err := s.Sign(ctx, ref)
	wantClass(t, err, fail.Sigstore, "Fulcio "+f.fulcio.URL, "injected outage", "pushed but not signed")
	f.set(func(f *fakeSigstore) { f.fulcioDown, f.tsaDown = false, true })
	_, err = s.Sign(ctx, ref)
	wantClass(t, err, fail.Sigstore, "timestamp authority "+f.tsa.URL+"/api/v1/timestamp", "500", "pushed but not signed")
	f.tsa.Close()
	_, err = s.Sign(ctx, ref)
	wantClass(t, err, fail.Sigstore, "timestamp authority", "unreachable")

	// A token Fulcio does not take (another issuer's key) is a
	// credentials problem, not an outage.
	forged := f.token(githubClaims("o/r", "release.yml", "refs/tags/v1"))
	forged = forged[:strings.LastIndex(forged, ".")+1] + "AAAA"
	_, err = f.signer(t, sign.TokenValue("SIGSTORE_ID_TOKEN", forged)).Sign(ctx, ref)
	wantClass(t, err, fail.Credentials, "Fulcio "+f.fulcio.URL+" refused the OIDC token from $SIGSTORE_ID_TOKEN", "401")

	// Back: a signer whose timestamp authority answers again.
	f.tsa = httptest.NewServer(http.HandlerFunc(f.serveTSA))
	defer f.tsa.Close()
	f.set(func(f *fakeSigstore) { f.tsaDown = false })
	inst := f.instance()
	s, err = sign.NewKeylessSigner(ctx, inst, sign.TokenValue("T", f.token(githubClaims("o/r", "release.yml", "refs/tags/v1"))), registry.Access{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Sign(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Digests) != 3 {
		t.Fatalf("rerun: %+v", res)
	}
	if _, err := sign.Verify(ctx, ref, f.policy(t, sign.Identity{Repo: "o/r"}), registry.Access{}); err != nil {
		t.Fatal(err)
	}

	// An instance with nothing to prove the time, or without Fulcio, is
	// refused before anything is asked.
	for _, bad := range []sign.Instance{{FulcioURL: f.fulcio.URL, TrustedRoot: f.trustedRoot}, {TSAURL: f.tsa.URL, TrustedRoot: f.trustedRoot}} {
		_, err := sign.NewKeylessSigner(ctx, bad, sign.TokenValue("T", "x"), registry.Access{})
		wantClass(t, err, fail.Usage)
	}
}
