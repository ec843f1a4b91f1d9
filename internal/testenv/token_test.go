package testenv

import (
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTokenEndpoint: each of GHCR's reported answers of /token, request by
// request, with no stack.
func TestTokenEndpoint(t *testing.T) {
	t.Parallel()
	s, err := newTokenService(tokenIssuer, "127.0.0.1:5000")
	if err != nil {
		t.Fatal(err)
	}
	writer := s.addPAT("ido-bot", WritePackages, nil)
	reader := s.addPAT("reader", ReadPackages, []string{"reader"})
	other := s.addPAT("other", WritePackages, []string{"Other"})
	revoked := s.addPAT("gone", WritePackages, nil)
	s.pats[revoked].revoked = true
	s.public["pub/app"] = true
	actions := s.add("ghs_", &pat{actions: true, user: "github-actions"}, []string{"org"})

	const denied = `{"errors":[{"code":"DENIED","message":"denied"}]}`
	cases := []struct {
		name       string
		method     string
		user, pass string // "" user: anonymous
		scopes     []string
		status     int
		body       string            // exact body, when not a token
		grants     map[string]string // repository → actions, when a token
	}{
		{name: "POST is not allowed", method: http.MethodPost, user: "ido-bot", pass: writer, scopes: []string{"repository:a/b:pull"}, status: 405},
		{name: "writer gets pull and push", user: "ido-bot", pass: writer, scopes: []string{"repository:a/b:pull,push"}, status: 200,
			grants: map[string]string{"a/b": "pull,push"}},
		{name: "repeated scope parameters", user: "ido-bot", pass: writer, scopes: []string{"repository:a/b:pull,push", "repository:c/d:pull"}, status: 200,
			grants: map[string]string{"a/b": "pull,push", "c/d": "pull"}},
		{name: "space-joined scopes", user: "ido-bot", pass: writer, scopes: []string{"repository:a/b:push repository:c/d:pull"}, status: 200,
			grants: map[string]string{"a/b": "push", "c/d": "pull"}},
		{name: "read-only PAT gets pull only", user: "reader", pass: reader, scopes: []string{"repository:reader/app:pull,push"}, status: 200,
			grants: map[string]string{"reader/app": "pull"}},
		{name: "PAT reads public packages of others", user: "other", pass: other, scopes: []string{"repository:pub/app:pull,push"}, status: 200,
			grants: map[string]string{"pub/app": "pull"}},
		{name: "PAT gets nothing on another owner's private package", user: "other", pass: other, scopes: []string{"repository:reader/app:pull"}, status: 200,
			grants: map[string]string{}},
		{name: "owners match case-insensitively", user: "other", pass: other, scopes: []string{"repository:other/app:push"}, status: 200,
			grants: map[string]string{"other/app": "push"}},
		{name: "bad PAT", user: "ido-bot", pass: "ghp_wrong", scopes: []string{"repository:a/b:pull"}, status: 403, body: denied},
		{name: "unknown user", user: "nobody", pass: writer, scopes: []string{"repository:a/b:pull"}, status: 403, body: denied},
		{name: "revoked PAT", user: "gone", pass: revoked, scopes: []string{"repository:a/b:pull"}, status: 403, body: denied},
		{name: "anonymous pull of a public package", scopes: []string{"repository:pub/app:pull"}, status: 200, grants: map[string]string{"pub/app": "pull"}},
		{name: "anonymous push of a public package gets pull only", scopes: []string{"repository:pub/app:pull,push"}, status: 200, grants: map[string]string{"pub/app": "pull"}},
		{name: "anonymous pull of a private package", scopes: []string{"repository:a/b:pull"}, status: 401,
			body: `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`},
		{name: "GITHUB_TOKEN without packages: write, any username", user: "someone", pass: actions, scopes: []string{"repository:org/app:pull,push"}, status: 200,
			grants: map[string]string{"org/app": "pull"}},
		{name: "no catalog", user: "ido-bot", pass: writer, scopes: []string{"registry:catalog:*"}, status: 200, grants: map[string]string{}},
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := url.Values{"service": {s.service}, "scope": tc.scopes}
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			req, _ := http.NewRequest(method, srv.URL+"/token?"+q.Encode(), nil)
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if tc.body != "" && strings.TrimSpace(string(b)) != tc.body {
				t.Errorf("body %s, want %s", b, tc.body)
			}
			if tc.grants == nil {
				return
			}
			var reply map[string]any
			if err := json.Unmarshal(b, &reply); err != nil || len(reply) != 1 || reply["token"] == nil {
				t.Fatalf("reply %s, want {\"token\": …} only", b)
			}
			c, err := s.parse(reply["token"].(string))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, a := range c.Access {
				got[a.Name] = strings.Join(a.Actions, ",")
			}
			if len(got) != len(tc.grants) {
				t.Errorf("grants %v, want %v", got, tc.grants)
			}
			for k, v := range tc.grants {
				if got[k] != v {
					t.Errorf("grants %v, want %v", got, tc.grants)
				}
			}
			if c.Issuer != tokenIssuer || c.Audience != s.service || c.Expires <= time.Now().Unix() {
				t.Errorf("claims %+v", c)
			}
		})
	}
}

// TestTokenSignature: the JWT is EdDSA with kid = the key's RFC 7638
// thumbprint, which distribution matches against its rootcertbundle.
func TestTokenSignature(t *testing.T) {
	t.Parallel()
	s, err := newTokenService(tokenIssuer, "svc")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.sign(claims{Issuer: tokenIssuer, Audience: "svc", Expires: time.Now().Add(time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	h, _ := base64.RawURLEncoding.DecodeString(parts[0])
	var head map[string]string
	if err := json.Unmarshal(h, &head); err != nil {
		t.Fatal(err)
	}
	if head["alg"] != "EdDSA" || head["kid"] != s.kid || len(s.kid) != 43 {
		t.Errorf("header %v, kid %q", head, s.kid)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	if !ed25519.Verify(s.key.Public().(ed25519.PublicKey), []byte(parts[0]+"."+parts[1]), sig) {
		t.Error("signature does not verify")
	}
	// RFC 8037 appendix A.3's thumbprint of its example Ed25519 key.
	x, _ := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if got := jwkThumbprint(ed25519.PublicKey(x)); got != "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k" {
		t.Errorf("thumbprint %s", got)
	}
	if _, err := s.parse(parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64))); err == nil {
		t.Error("a forged signature was accepted")
	}
}

// TestTokenFront: what the front changes between the client and
// distribution (stood in here by a handler that answers as distribution's
// token auth does).
func TestTokenFront(t *testing.T) {
	t.Parallel()
	s, err := newTokenService(tokenIssuer, "svc")
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Method+" "+r.URL.RequestURI()+" proto="+r.Header.Get("X-Forwarded-Proto")+" host="+r.Host)
		if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/denied/") {
			w.Header().Set("WWW-Authenticate", `Bearer realm="x",service="svc",scope="repository:denied/app:pull,push",error="insufficient_scope"`)
			jsonError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer backend.Close()
	dir := t.TempDir()
	if err := selfSigned(filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := startTokenFront(l, cert, s, strings.TrimPrefix(backend.URL, "http://"))
	defer f.close()
	r := &Registry{Host: l.Addr().String(), CAFile: filepath.Join(dir, "c.pem")}
	client, err := r.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	token := func(lifetime time.Duration, grants ...access) string {
		tok, err := s.sign(claims{Issuer: tokenIssuer, Audience: "svc", Expires: time.Now().Add(lifetime).Unix(), Access: grants})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	do := func(method, path, tok, body string) (*http.Response, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, "https://"+r.Host+path, rd)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, strings.TrimSpace(string(b))
	}

	t.Run("a write refused for scope is GHCR's 403", func(t *testing.T) {
		resp, body := do(http.MethodPost, "/v2/denied/app/blobs/uploads/", token(time.Minute), "")
		want := `{"errors":[{"code":"DENIED","message":"permission_denied: The token provided does not match expected scopes."}]}`
		if resp.StatusCode != 403 || body != want || resp.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("%d %q %q", resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
		}
	})
	t.Run("a workflow's GITHUB_TOKEN is refused with write_package", func(t *testing.T) {
		tok, err := s.sign(claims{Issuer: tokenIssuer, Audience: "svc", Expires: time.Now().Add(time.Minute).Unix(), Actions: true})
		if err != nil {
			t.Fatal(err)
		}
		resp, body := do(http.MethodPost, "/v2/denied/app/blobs/uploads/", tok, "")
		if resp.StatusCode != 403 || body != `{"errors":[{"code":"DENIED","message":"permission_denied: write_package"}]}` {
			t.Errorf("%d %q", resp.StatusCode, body)
		}
	})
	t.Run("the backend sees the client's host and https", func(t *testing.T) {
		seen = nil
		do(http.MethodPost, "/v2/ok/app/blobs/uploads/", token(time.Minute), "")
		if len(seen) != 1 || !strings.HasSuffix(seen[0], "proto=https host="+r.Host) {
			t.Errorf("backend saw %v", seen)
		}
	})
	t.Run("a mount without read on the source is an upload", func(t *testing.T) {
		seen = nil
		do(http.MethodPost, "/v2/ok/app/blobs/uploads/?from=other%2Fsrc&mount=sha256%3Aab", token(time.Minute, access{"repository", "ok/app", []string{"pull", "push"}}), "")
		if len(seen) != 1 || strings.Contains(seen[0], "mount=") {
			t.Errorf("backend saw %v", seen)
		}
	})
	t.Run("a mount with read on the source stays a mount", func(t *testing.T) {
		seen = nil
		do(http.MethodPost, "/v2/ok/app/blobs/uploads/?from=other%2Fsrc&mount=sha256%3Aab", token(time.Minute, access{"repository", "other/src", []string{"pull"}}), "")
		if len(seen) != 1 || !strings.Contains(seen[0], "mount=sha256") {
			t.Errorf("backend saw %v", seen)
		}
	})
	t.Run("an expired token is challenged at once", func(t *testing.T) {
		seen = nil
		resp, _ := do(http.MethodHead, "/v2/ok/app/blobs/sha256:ab", token(-2*time.Second), "")
		want := `Bearer realm="https://` + r.Host + `/token",service="svc",scope="repository:ok/app:pull",error="invalid_token"`
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != want || len(seen) != 0 {
			t.Errorf("%d %q, backend saw %v", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), seen)
		}
		if s.rejected.Load() != 1 {
			t.Errorf("expired count %d", s.rejected.Load())
		}
	})
	t.Run("an expired token with a body is left to the registry's leeway", func(t *testing.T) {
		seen = nil
		resp, _ := do(http.MethodPatch, "/v2/ok/app/blobs/uploads/x", token(-2*time.Second), "data")
		if resp.StatusCode != http.StatusAccepted || len(seen) != 1 {
			t.Errorf("%d, backend saw %v", resp.StatusCode, seen)
		}
	})
	t.Run("/token is the token service", func(t *testing.T) {
		resp, _ := do(http.MethodPost, "/token", "", "grant_type=password")
		if resp.StatusCode != 405 || !slices.Contains(resp.Header.Values("Allow"), "GET") {
			t.Errorf("%d %v", resp.StatusCode, resp.Header)
		}
	})
}
