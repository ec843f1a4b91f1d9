package testenv

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"
)

// fulcioGitHubClaims are the claims Fulcio v1.8.8's github-workflow type
// refuses a token without (pkg/identity/github/principal.go).
var fulcioGitHubClaims = []string{"job_workflow_ref", "sha", "event_name", "repository", "workflow", "ref", "job_workflow_sha",
	"runner_environment", "repository_id", "repository_owner", "repository_owner_id", "repository_visibility",
	"workflow_ref", "workflow_sha", "run_id", "run_attempt"}

// TestIssuer checks the issuer with no stack: discovery, a token that the
// JWKS verifies and that carries every claim Fulcio requires, and the
// runner's request endpoint with GitHub's answers.
func TestIssuer(t *testing.T) {
	t.Parallel()
	is, err := startIssuer()
	if err != nil {
		t.Fatal(err)
	}
	defer is.Stop()
	var disc struct {
		Issuer string   `json:"issuer"`
		JWKS   string   `json:"jwks_uri"`
		Algs   []string `json:"id_token_signing_alg_values_supported"`
	}
	getJSON(t, is.URL+"/.well-known/openid-configuration", &disc)
	if disc.Issuer != is.URL || disc.JWKS == "" || len(disc.Algs) != 1 || disc.Algs[0] != "RS256" {
		t.Fatalf("discovery: %+v", disc)
	}
	var jwks struct {
		Keys []struct{ Kid, Kty, N, E string } `json:"keys"`
	}
	getJSON(t, disc.JWKS, &jwks)
	if len(jwks.Keys) != 1 || jwks.Keys[0].Kty != "RSA" {
		t.Fatalf("jwks: %+v", jwks)
	}
	k := jwks.Keys[0]
	n, _ := base64.RawURLEncoding.DecodeString(k.N)
	e, _ := base64.RawURLEncoding.DecodeString(k.E)
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	verify := func(t *testing.T, tok string) map[string]any {
		t.Helper()
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			t.Fatalf("not a compact JWS: %d parts", len(parts))
		}
		var h struct{ Alg, Kid string }
		decodePart(t, parts[0], &h)
		if h.Alg != "RS256" || h.Kid != k.Kid {
			t.Fatalf("header %+v, want RS256 with kid %s", h, k.Kid)
		}
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
			t.Fatalf("the JWKS does not verify the token: %v", err)
		}
		var c map[string]any
		decodePart(t, parts[1], &c)
		return c
	}

	t.Run("token", func(t *testing.T) {
		tok, err := is.Token(GitHubClaims{Repository: "o/r", Ref: "refs/tags/v1", Workflow: ".github/workflows/ship.yaml"})
		if err != nil {
			t.Fatal(err)
		}
		c := verify(t, tok)
		for _, name := range append(fulcioGitHubClaims, "iss", "sub", "aud", "exp", "iat", "nbf", "jti") {
			if v, ok := c[name]; !ok || v == "" {
				t.Errorf("claim %s missing or empty", name)
			}
		}
		for name, want := range map[string]any{
			"iss": is.URL, "aud": "sigstore", "sub": "repo:o/r:ref:refs/tags/v1", "repository_owner": "o", "ref_type": "tag",
			"workflow_ref": "o/r/.github/workflows/ship.yaml@refs/tags/v1", "job_workflow_ref": "o/r/.github/workflows/ship.yaml@refs/tags/v1",
			"workflow": "ship",
		} {
			if c[name] != want {
				t.Errorf("%s = %v, want %v", name, c[name], want)
			}
		}
		if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat != 300 {
			t.Errorf("lifetime %v s, want 300", exp-iat)
		}
		if san := (GitHubClaims{Repository: "o/r", Ref: "refs/tags/v1", Workflow: ".github/workflows/ship.yaml"}).SAN(); san != "https://github.com/o/r/.github/workflows/ship.yaml@refs/tags/v1" {
			t.Errorf("SAN %s", san)
		}
	})
	t.Run("omit and expire", func(t *testing.T) {
		tok, err := is.Token(GitHubClaims{Omit: []string{"run_attempt"}, IssuedAt: time.Now().Add(-time.Hour), Lifetime: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		c := verify(t, tok)
		if _, ok := c["run_attempt"]; ok {
			t.Error("run_attempt not omitted")
		}
		if exp := int64(c["exp"].(float64)); exp > time.Now().Unix() {
			t.Errorf("exp %d is not past", exp)
		}
	})
	t.Run("actions request", func(t *testing.T) {
		url, reqTok := is.ActionsRequest(GitHubClaims{Repository: "acme/tool", Environment: "prod"})
		if !strings.Contains(url, "?api-version=") {
			t.Fatalf("request URL %s has no query for clients to append &audience= to", url)
		}
		get := func(url, auth string) (int, string) {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var v struct{ Value string }
			_ = json.NewDecoder(resp.Body).Decode(&v)
			return resp.StatusCode, v.Value
		}
		if code, _ := get(url+"&audience=sigstore", "bearer wrong"+reqTok); code != http.StatusForbidden {
			t.Errorf("wrong request token: %d, want 403", code)
		}
		if code, _ := get(url+"&audience=sigstore", ""); code != http.StatusUnauthorized {
			t.Errorf("no request token: %d, want 401", code)
		}
		code, tok := get(url+"&audience=sigstore", "bearer "+reqTok)
		if code != http.StatusOK {
			t.Fatalf("request: %d", code)
		}
		c := verify(t, tok)
		if c["aud"] != "sigstore" || c["repository"] != "acme/tool" || c["sub"] != "repo:acme/tool:environment:prod" || c["environment"] != "prod" {
			t.Errorf("claims %v", c)
		}
		code, tok = get(url, "Bearer "+reqTok)
		if code != http.StatusOK {
			t.Fatalf("request without audience: %d", code)
		}
		if c := verify(t, tok); c["aud"] != "https://github.com/acme" {
			t.Errorf("default audience %v, want the owner's URL as GitHub's", c["aud"])
		}
	})
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func decodePart(t *testing.T, part string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}
