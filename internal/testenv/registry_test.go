package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
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
	ctx := context.Background()
	r, client := testRegistry(t)
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

// TestCorruptImage: CorruptImage's layer reads back with its size but
// another sha256, and images pushed beside it stay whole. The subtest
// shows why the layer must be its own: a layer corrupted in place is
// corrupted for every repository that holds it. That is how the e2e
// suite's in-place corruption of the planner layer, which every test
// builds, made other tests' verify-pull --full fail (exit 12).
func TestCorruptImage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, client := testRegistry(t)
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(client.Transport),
		remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: r.Username, Password: r.Password}))}
	// Two tests push the same image, as every e2e test pushes the planner.
	shared, err := random.Image(256<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, repo := range []string{"one/planner", "two/planner"} {
		if err := remote.Write(ref(t, r.Host+"/"+repo+":1"), shared, opts...); err != nil {
			t.Fatal(err)
		}
	}
	c, err := r.CorruptImage(ctx, "deep/planner")
	if err != nil {
		t.Fatal(err)
	}
	err = readLayers(ref(t, c.Ref), opts)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("checksum after reading %d bytes", c.Size)) || !strings.Contains(err.Error(), c.Layer) {
		t.Errorf("the corrupt image's layer read back with: %v", err)
	}
	for _, repo := range []string{"one/planner", "two/planner"} {
		if err := readLayers(ref(t, r.Host+"/"+repo+":1"), opts); err != nil {
			t.Errorf("%s, pushed beside the corrupt image: %v", repo, err)
		}
	}

	t.Run("a shared layer corrupted in place is corrupt in every repository", func(t *testing.T) {
		layers, err := shared.Layers()
		if err != nil {
			t.Fatal(err)
		}
		h, err := layers[0].Digest()
		if err != nil {
			t.Fatal(err)
		}
		// What the e2e suite did to "its" planner layer in one repository.
		data := filepath.Join(r.Root, "docker/registry/v2/blobs/sha256", h.Hex[:2], h.Hex, "data")
		b, err := os.ReadFile(data)
		if err != nil {
			t.Fatal(err)
		}
		for i := len(b) / 2; i < len(b)/2+16; i++ {
			b[i] ^= 0xff
		}
		if err := os.WriteFile(data, b, 0o644); err != nil {
			t.Fatal(err)
		}
		// A push of the same layer to a third repository does not repair it.
		if err := remote.Write(ref(t, r.Host+"/three/planner:1"), shared, opts...); err != nil {
			t.Fatal(err)
		}
		for _, repo := range []string{"two/planner", "three/planner"} {
			err := readLayers(ref(t, r.Host+"/"+repo+":1"), opts)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("checksum after reading %d bytes", len(b))) {
				t.Errorf("%s after the layer was corrupted through another repository: %v", repo, err)
			}
		}
	})
}

// readLayers downloads every layer of the image at ref through
// go-containerregistry's verifying reader.
func readLayers(r name.Reference, opts []remote.Option) error {
	img, err := remote.Image(r, opts...)
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// testRegistry starts a registry of the test's own, stopped when it ends,
// and an HTTP client that trusts it.
func testRegistry(t *testing.T) (*Registry, *http.Client) {
	t.Helper()
	NeedStack(t)
	tools, err := ToolsDir()
	if err != nil {
		t.Fatal(err)
	}
	r, err := startRegistry(context.Background(), tools, t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop() })
	client, err := r.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	return r, client
}
