package testenv

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// TestRegistryTokenFlow runs the GHCR stand-in (distribution v3 with token
// auth behind its front) and goes through GHCR's token flow with
// go-containerregistry, as idopipe does: distribution must accept the
// tokens, and each refusal must be GHCR's.
func TestRegistryTokenFlow(t *testing.T) {
	t.Parallel()
	NeedStack(t)
	tools, err := ToolsDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, err := startRegistry(ctx, tools, t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	client, err := r.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	tr := client.Transport.(*http.Transport)
	as := func(user, pass string) []remote.Option {
		auth := authn.Anonymous
		if user != "" {
			auth = authn.FromConfig(authn.AuthConfig{Username: user, Password: pass})
		}
		return []remote.Option{remote.WithContext(ctx), remote.WithTransport(tr), remote.WithAuth(auth)}
	}
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	tag := ref(t, r.Host+"/flow/app:1")
	statusOf := func(err error) (int, string) {
		var te *transport.Error
		if errors.As(err, &te) {
			return te.StatusCode, te.Error()
		}
		return 0, ""
	}

	t.Run("challenge", func(t *testing.T) {
		resp, err := client.Get("https://" + r.Host + "/v2/flow/app/manifests/1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := `Bearer realm="https://` + r.Host + `/token",service="` + r.Host + `",scope="repository:flow/app:pull"`
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != want {
			t.Errorf("%d %q, want 401 %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
		}
		resp, err = client.Post("https://"+r.Host+"/token", "application/x-www-form-urlencoded", strings.NewReader("grant_type=password"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 {
			t.Errorf("POST /token: %d, want 405", resp.StatusCode)
		}
	})
	t.Run("the default PAT pushes and pulls", func(t *testing.T) {
		if err := remote.Write(tag, img, as(r.Username, r.Password)...); err != nil {
			t.Fatal(err)
		}
		if _, err := remote.Head(tag, as(r.Username, r.Password)...); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a read-only PAT pulls and may not push", func(t *testing.T) {
		ro := r.IssuePAT("reader", ReadPackages)
		if _, err := remote.Head(tag, as("reader", ro)...); err != nil {
			t.Fatal(err)
		}
		err := remote.Write(ref(t, r.Host+"/flow/app:2"), img, as("reader", ro)...)
		if code, msg := statusOf(err); code != 403 || !strings.Contains(msg, "permission_denied: The token provided does not match expected scopes.") {
			t.Errorf("push with a read-only PAT: %v", err)
		}
	})
	t.Run("a bad or revoked PAT is denied at the token endpoint", func(t *testing.T) {
		gone := r.IssuePAT("gone", WritePackages)
		r.RevokePAT(gone)
		for _, pass := range []string{"ghp_wrong", gone} {
			_, err := remote.Head(tag, as("gone", pass)...)
			code, msg := statusOf(err)
			if code != 403 || !strings.Contains(msg, "GET https://"+r.Host+"/token") || !strings.Contains(msg, "DENIED: denied") {
				t.Errorf("%d %v", code, err)
			}
		}
	})
	t.Run("anonymous pulls public packages only", func(t *testing.T) {
		_, err := remote.Head(tag, as("", "")...)
		if code, _ := statusOf(err); code != 401 {
			t.Errorf("anonymous pull of a private package: %v", err)
		}
		r.SetPublic("flow/app", true)
		defer r.SetPublic("flow/app", false)
		if _, err := remote.Image(tag, as("", "")...); err != nil {
			t.Errorf("anonymous pull of a public package: %v", err)
		}
	})
	t.Run("a token expiring mid-push is fetched again", func(t *testing.T) {
		prev := r.SetTokenLifetime(time.Second)
		defer r.SetTokenLifetime(prev)
		before := r.TokenStats()
		big, err := random.Image(2<<20, 4)
		if err != nil {
			t.Fatal(err)
		}
		// One blob at a time, slowed down, so that the push outlasts its
		// token.
		slow := &slowTransport{next: tr, delay: 300 * time.Millisecond}
		opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(slow), remote.WithJobs(1),
			remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: r.Username, Password: r.Password}))}
		if err := remote.Write(ref(t, r.Host+"/flow/big:1"), big, opts...); err != nil {
			t.Fatal(err)
		}
		after := r.TokenStats()
		if after.Expired == before.Expired || after.Issued-before.Issued < 2 {
			t.Errorf("token stats %+v → %+v: no expiry met mid-push", before, after)
		}
	})
}

// slowTransport waits before each request.
type slowTransport struct {
	next  http.RoundTripper
	delay time.Duration
}

func (s *slowTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	time.Sleep(s.delay)
	return s.next.RoundTrip(r)
}

func ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
