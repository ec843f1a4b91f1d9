package e2e

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idopipe/idopipe/pkg/fail"
)

// The TestFakeGHCR* tests put GHCR's own answers (status codes and bodies
// exactly as GHCR sends them, as its users report them in
// docker/build-push-action, docker/login-action and elsewhere) between
// idopipe and the real registry, through the loopback proxy: GHCR cannot
// be reached from here, and the stand-in registry never says these things.

const (
	ghcrWriteOrg     = `{"errors":[{"code":"DENIED","message":"installation not allowed to Write organization package"}]}`
	ghcrWritePackage = `{"errors":[{"code":"DENIED","message":"permission_denied: write_package"}]}`
	ghcrReadOrg      = `{"errors":[{"code":"DENIED","message":"installation not allowed to Read organization package"}]}`
	ghcrUnauth       = `{"errors":[{"code":"UNAUTHORIZED","message":"unauthenticated: User cannot be authenticated with the token provided."}]}`
	ghcrInvalid      = `{"errors":[{"code":"DENIED","message":"invalid token"}]}`
	ghcrSecondary    = `{"errors":[{"code":"DENIED","message":"permission_denied: Error from intermediary with HTTP status code 403 \"Forbidden\" - with-body: {\n  \"message\": \"You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 9055:2E795C:1F5BEB:235307:6A79DADE.\"\n}"}]}`
)

// TestFakeGHCRFineGrainedToken: a fine-grained token is refused before
// any request reaches the registry, for a push and for a release (which
// then builds nothing).
func TestFakeGHCRFineGrainedToken(t *testing.T) {
	t.Parallel()
	proxy, err := stack.Registry.StartProxy(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	env := []string{"GITHUB_TOKEN=github_pat_11AAAAAAA0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01"}
	want := "the token from $GITHUB_TOKEN is a fine-grained personal access token (github_pat_…), which GHCR does not accept: create a classic token (ghp_…) with write:packages"
	dir, _ := randomLayout(t, 1024, 1)
	for _, args := range [][]string{
		{"push", "--oci-layout", dir, "--version", "fine", "--registry", proxy.Host, "--registry-ca", proxy.CAFile, "--owner", "fine"},
		releaseArgs("fine-grained", "--registry", proxy.Host, "--registry-ca", proxy.CAFile),
	} {
		r := idopipe(t, env, args...)
		if r.code != int(fail.Credentials) || !strings.Contains(r.stderr, want) {
			t.Errorf("want exit 3 and %q:\n%s", want, r)
		}
		if strings.Contains(r.stdout, "build") {
			t.Errorf("a stage ran:\n%s", r)
		}
		if strings.Contains(r.stderr+r.stdout, "github_pat_11AAAA") {
			t.Error("the token is in the output")
		}
	}
	if n := proxy.Requests(); n != 0 {
		t.Errorf("%d requests reached the registry", n)
	}
}

// TestFakeGHCRRefusals: each of GHCR's refusals of a push, found by the
// preflight, is one line with its own cause and fix; reading another
// repository's package is found by verify-pull.
func TestFakeGHCRRefusals(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		status int
		body   string
		want   []string
	}{
		{"GITHUB_TOKEN without packages: write", 403, ghcrWriteOrg,
			[]string{"the workflow's GITHUB_TOKEN may not write packages", `403 "installation not allowed to Write organization package"`, "permissions: packages: write"}},
		{"package pushed by hand", 403, ghcrWritePackage,
			[]string{"this repository has no write access to it, as when it was first pushed by hand", "Manage Actions access", "Write role"}},
		{"bad or expired token", 401, ghcrUnauth,
			[]string{"cannot authenticate the token from $GITHUB_TOKEN", "(401 \"unauthenticated: User cannot be authenticated with the token provided.\")", "wrong, revoked or expired"}},
		{"invalid token", 403, ghcrInvalid,
			[]string{"refused the token from $GITHUB_TOKEN as invalid", `(403 "invalid token")`, "copied whole"}},
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			proxy, err := stack.Registry.StartProxy(t.TempDir(), func(r *http.Request) (int, string, bool) {
				if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/") {
					return tc.status, tc.body, true
				}
				return 0, "", false
			})
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			r := idopipe(t, nil, "preflight", "--registry", proxy.Host, "--registry-ca", proxy.CAFile, "--owner", "refused")
			line := strings.TrimSpace(r.stderr)
			if r.code != int(fail.Credentials) || strings.Count(line, "\n") != 0 || !strings.Contains(line, proxy.Host+"/refused/planner") {
				t.Fatalf("want exit 3 and one line naming the image:\n%s", r)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("%q does not say %q", line, w)
				}
			}
			if seen[line] {
				t.Errorf("another refusal reads the same: %q", line)
			}
			seen[line] = true
			// A refusal is not retried.
			if n := proxy.Count(http.MethodPost, "/v2/refused/planner/blobs/uploads/"); n != 1 {
				t.Errorf("the refused upload was tried %d times", n)
			}
		})
	}

	t.Run("another repository's package", func(t *testing.T) {
		dir, digest := randomLayout(t, 1024, 1)
		if p := idopipe(t, nil, "push", "--oci-layout", dir, "--digest", digest, "--version", "1", "--registry", stack.Registry.Host,
			"--registry-ca", stack.Registry.CAFile, "--owner", "other-repo"); p.code != 0 {
			t.Fatalf("push:\n%s", p)
		}
		proxy, err := stack.Registry.StartProxy(t.TempDir(), func(r *http.Request) (int, string, bool) {
			if strings.Contains(r.URL.Path, "/manifests/") {
				return http.StatusForbidden, ghcrReadOrg, true
			}
			return 0, "", false
		})
		if err != nil {
			t.Fatal(err)
		}
		defer proxy.Close()
		r := idopipe(t, nil, "verify-pull", "--registry-ca", proxy.CAFile, proxy.Host+"/other-repo/planner:1")
		for _, w := range []string{"package " + proxy.Host + "/other-repo/planner belongs to another repository", "may not read it",
			"Manage Actions access add this repository (Read role), or make the package public"} {
			if r.code != int(fail.Credentials) || !strings.Contains(r.stderr, w) {
				t.Errorf("want exit 3 and %q:\n%s", w, r)
			}
		}
	})

	// In a release the refusal comes from the checks alongside the build,
	// before any push.
	t.Run("release", func(t *testing.T) {
		proxy, err := stack.Registry.StartProxy(t.TempDir(), func(r *http.Request) (int, string, bool) {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/") {
				return http.StatusForbidden, ghcrWriteOrg, true
			}
			return 0, "", false
		})
		if err != nil {
			t.Fatal(err)
		}
		defer proxy.Close()
		dir := t.TempDir()
		env := []string{"GITHUB_ACTIONS=true", "GITHUB_OUTPUT=" + dir + "/out", "GITHUB_STEP_SUMMARY=" + dir + "/summary"}
		r := idopipeRaw(t, env, releaseArgs("ghcr-refused", "--registry", proxy.Host, "--registry-ca", proxy.CAFile)...)
		// The failed check cancels the build (or, when the build was
		// quicker, fails the checks stage after it).
		annotated := strings.Contains(r.stdout, "::error title=idopipe build::registry "+proxy.Host+" denied the push") ||
			strings.Contains(r.stdout, "::error title=idopipe checks::registry "+proxy.Host+" denied the push")
		if r.code != int(fail.Credentials) || !annotated || !strings.Contains(r.stdout, "GITHUB_TOKEN may not write packages") {
			t.Fatalf("release refused by GHCR:\n%s", r)
		}
		if strings.Contains(r.stdout, "::group::push") {
			t.Error("the refusal was found only after the push started")
		}
	})
}

// TestFakeGHCRSecondaryRateLimit: GitHub's secondary rate limit (a 403) is
// retried with backoff; a push it lets through in the end succeeds, and one
// it never lets through fails as a rate limit (exit 14), not as a
// credentials problem. HEAD requests go through: an answer to a HEAD has no
// body, so a rate limit there cannot be told from a refusal (by anyone); so
// do the token endpoint's, the API's answers being what is tested.
func TestFakeGHCRSecondaryRateLimit(t *testing.T) {
	t.Parallel()
	dir, digest := randomLayout(t, 4096, 2)
	push := func(host, ca, owner string) result {
		return idopipe(t, nil, "push", "--oci-layout", dir, "--digest", digest, "--version", "limited",
			"--registry", host, "--registry-ca", ca, "--owner", owner, "--progress", "quiet")
	}

	t.Run("clears", func(t *testing.T) {
		// Every distinct request is answered with the rate limit twice,
		// then goes through.
		var mu sync.Mutex
		seen := map[string]int{}
		var limited atomic.Int64
		proxy, err := stack.Registry.StartProxy(t.TempDir(), func(r *http.Request) (int, string, bool) {
			if r.URL.Path == "/v2/" || r.URL.Path == "/token" || r.Method == http.MethodHead {
				return 0, "", false
			}
			key := r.Method + " " + r.URL.Path
			if i := strings.Index(key, "/blobs/uploads/"); i >= 0 {
				key = key[:i] // an upload session's URL changes with each attempt
			}
			mu.Lock()
			seen[key]++
			n := seen[key]
			mu.Unlock()
			if n <= 2 {
				limited.Add(1)
				return http.StatusForbidden, ghcrSecondary, true
			}
			return 0, "", false
		})
		if err != nil {
			t.Fatal(err)
		}
		defer proxy.Close()
		r := push(proxy.Host, proxy.CAFile, "limited")
		if r.code != 0 || !strings.Contains(r.stdout, "@"+digest) {
			t.Fatalf("push through a passing rate limit:\n%s", r)
		}
		if limited.Load() == 0 {
			t.Fatal("no rate limit was injected")
		}
		t.Logf("push completed after %d rate-limited answers (%d requests)", limited.Load(), proxy.Requests())
	})

	t.Run("persists", func(t *testing.T) {
		proxy, err := stack.Registry.StartProxy(t.TempDir(), func(r *http.Request) (int, string, bool) {
			if r.URL.Path == "/v2/" || r.URL.Path == "/token" || r.Method == http.MethodHead {
				return 0, "", false
			}
			return http.StatusForbidden, ghcrSecondary, true
		})
		if err != nil {
			t.Fatal(err)
		}
		defer proxy.Close()
		start := time.Now()
		r := push(proxy.Host, proxy.CAFile, "always-limited")
		took := time.Since(start)
		want := []string{"kept answering the push of " + proxy.Host + "/always-limited/planner:limited with GitHub's secondary rate limit",
			`(403 "You have exceeded a secondary rate limit.")`, "still after retries with backoff", "this is not a credentials problem"}
		for _, w := range want {
			if r.code != int(fail.RateLimit) || !strings.Contains(r.stderr, w) {
				t.Errorf("want exit 14 and %q:\n%s", w, r)
			}
		}
		// Retried: the first request of the push was sent four times
		// (1s, 3s, 9s apart), not once.
		var most int
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch} {
			if n := proxy.Count(m, "/v2/always-limited/planner/"); n > most {
				most = n
			}
		}
		if most < 4 {
			t.Errorf("the rate-limited request was sent %d times, want 4 (retried with backoff)", most)
		}
		t.Logf("rate limit reported after %d requests in %.1fs", proxy.Requests(), took.Seconds())
		if e := idopipe(t, nil, "exit-codes"); !strings.Contains(e.stdout, " 14  rate-limited") {
			t.Errorf("exit-codes:\n%s", e.stdout)
		}
	})
}

// TestGHCRPublicPackage: verify-pull tells a public package (the stand-in
// hands out anonymous tokens for it, as GHCR does) from a private one, and
// says what a private one needs.
func TestGHCRPublicPackage(t *testing.T) {
	t.Parallel()
	dir, digest := randomLayout(t, 1024, 1)
	if p := idopipe(t, nil, "push", "--oci-layout", dir, "--digest", digest, "--version", "1", "--registry", stack.Registry.Host,
		"--registry-ca", stack.Registry.CAFile, "--owner", "visibility"); p.code != 0 {
		t.Fatalf("push:\n%s", p)
	}
	stack.Registry.SetPublic("visibility/planner", true)
	r := idopipe(t, nil, "verify-pull", "--registry-ca", stack.Registry.CAFile, stack.Registry.Host+"/visibility/planner:1", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"visibility":"public"`) || !strings.Contains(r.stdout, "public: anonymous pulls work, the cluster needs no pull Secret") {
		t.Errorf("a public package:\n%s", r)
	}
	stack.Registry.SetPublic("visibility/planner", false)
	r = idopipe(t, nil, "verify-pull", "--registry-ca", stack.Registry.CAFile, stack.Registry.Host+"/visibility/planner:1")
	if r.code != 0 || !strings.Contains(r.stdout, "private: anonymous pulls are refused, so the cluster needs the pull Secret (idopipe creates it), or make the package public in its package settings") {
		t.Errorf("a private package:\n%s", r)
	}
}
