package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
	"github.com/idopipe/idopipe/pkg/sign"
)

// The tests below pull from the local stack's registry (TLS and htpasswd,
// the stand-in for GHCR), started on first use: about a second, and no
// machine lock.
var (
	stackOnce sync.Once
	stack     *testenv.Stack
	stackErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if stack != nil {
		stack.Stop()
	}
	os.Exit(code)
}

func startRegistry(t *testing.T) *testenv.Registry {
	t.Helper()
	stackOnce.Do(func() { stack, stackErr = testenv.Start(context.Background(), "", testenv.Parts{Registry: true}) })
	if stackErr != nil {
		t.Fatalf("start the registry: %v", stackErr)
	}
	return stack.Registry
}

func accessAs(r *testenv.Registry, password string) registry.Access {
	c := creds.Credentials{Username: r.Username, Token: creds.NewSecret(password), Source: "the test"}
	return registry.Access{Creds: &c, CAFile: r.CAFile}
}

// push writes img (or idx) to repo:tag and returns the tag and digest.
func push(t *testing.T, r *testenv.Registry, repo string, obj interface{ Digest() (v1.Hash, error) }) (name.Tag, string) {
	t.Helper()
	tag, err := name.NewTag(r.Host + "/" + repo + ":1")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := accessAs(r, r.Password).Options(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	switch o := obj.(type) {
	case v1.ImageIndex:
		err = remote.WriteIndex(tag, o, opts...)
	case v1.Image:
		err = remote.Write(tag, o, opts...)
	}
	if err != nil {
		t.Fatal(err)
	}
	h, err := obj.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return tag, h.String()
}

func image(t *testing.T, os, arch string) v1.Image {
	t.Helper()
	img, err := testenv.PlatformImage(os, arch, 512, 2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestPullFromRegistry(t *testing.T) {
	testenv.NeedStack(t)
	r := startRegistry(t)
	ctx := context.Background()
	tag, digest := push(t, r, "verify/single", image(t, "linux", "amd64"))
	v := New(accessAs(r, r.Password))

	rep, err := v.Pull(ctx, tag, digest)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Digest != digest || len(rep.Platforms) != 1 || rep.Platforms[0] != "linux/amd64" || rep.Visibility != Private || rep.Anonymous {
		t.Errorf("report %+v", rep)
	}
	if want := tag.String() + "@" + digest + " pullable, platforms [linux/amd64]; private:"; !strings.HasPrefix(rep.String(), want) {
		t.Errorf("%q does not start with %q", rep, want)
	}
	if _, err := New(accessAs(r, r.Password), WithFull(), WithPlatforms("linux/amd64")).Pull(ctx, tag, digest); err != nil {
		t.Errorf("full pull: %v", err)
	}

	t.Run("another digest", func(t *testing.T) {
		other := "sha256:" + strings.Repeat("0", 64)
		_, err := v.Pull(ctx, tag, other)
		if fail.ClassOf(err) != fail.Verify || err.Error() != fmt.Sprintf("%s resolves to %s, not the expected %s: another push may have moved the tag; rerun the release", tag, digest, other) {
			t.Errorf("got %s %v", fail.ClassOf(err), err)
		}
	})
	t.Run("missing platform", func(t *testing.T) {
		_, err := Pull(ctx, tag, digest, accessAs(r, r.Password), WithPlatforms("linux/arm64"))
		if fail.ClassOf(err) != fail.Platform || err.Error() != tag.String()+" has no image for platform linux/arm64 (it has linux/amd64): build with --platform including linux/arm64" {
			t.Errorf("got %s %v", fail.ClassOf(err), err)
		}
	})
	t.Run("unknown tag", func(t *testing.T) {
		missing := tag.Context().Tag("nope")
		_, err := v.Pull(ctx, missing, "")
		var te *transport.Error
		if fail.ClassOf(err) != fail.NotFound || !errors.As(err, &te) || te.StatusCode != http.StatusNotFound {
			t.Errorf("got %s %v, want not-found with the 404 as cause", fail.ClassOf(err), err)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		_, err := New(accessAs(r, "ghp_wrong")).Pull(ctx, tag, digest)
		var te *transport.Error
		// GHCR's token endpoint refuses a wrong PAT: 403 DENIED.
		if fail.ClassOf(err) != fail.Credentials || !errors.As(err, &te) || te.StatusCode != http.StatusForbidden || !strings.Contains(err.Error(), "refused the credentials") {
			t.Errorf("got %s %v, want credentials with the token endpoint's 403 as cause", fail.ClassOf(err), err)
		}
	})
	t.Run("anonymous", func(t *testing.T) {
		_, err := New(registry.Access{CAFile: r.CAFile}).Pull(ctx, tag, digest)
		if fail.ClassOf(err) != fail.Credentials || !strings.Contains(err.Error(), "rejected anonymous") {
			t.Errorf("got %s %v", fail.ClassOf(err), err)
		}
	})
	t.Run("visibility", func(t *testing.T) {
		// GHCR answers an anonymous token request for a private package
		// with 401, and hands out a pull token for a public one.
		rep, err := New(accessAs(r, r.Password)).Pull(ctx, tag, digest)
		if err != nil || rep.Visibility != Private || rep.Anonymous {
			t.Errorf("private package: %+v %v", rep, err)
		}
		r.SetPublic(tag.Context().RepositoryStr(), true)
		defer r.SetPublic(tag.Context().RepositoryStr(), false)
		rep, err = New(accessAs(r, r.Password)).Pull(ctx, tag, digest)
		if err != nil || rep.Visibility != Public || !rep.Anonymous {
			t.Errorf("public package: %+v %v", rep, err)
		}
		if _, err := New(registry.Access{CAFile: r.CAFile}).Pull(ctx, tag, digest); err != nil {
			t.Errorf("anonymous pull of a public package: %v", err)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		_, err := New(registry.Access{Creds: accessAs(r, r.Password).Creds}).Pull(ctx, tag, digest)
		if fail.ClassOf(err) != fail.Registry || !strings.Contains(err.Error(), "certificate signed by an unknown authority") {
			t.Errorf("got %s %v", fail.ClassOf(err), err)
		}
	})
}

// TestPullIndex: the platforms of an index, attestations left out.
func TestPullIndex(t *testing.T) {
	testenv.NeedStack(t)
	r := startRegistry(t)
	att := image(t, "unknown", "unknown")
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: image(t, "linux", "amd64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: image(t, "linux", "arm64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
		mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}}},
	)
	tag, digest := push(t, r, "verify/index", idx)
	rep, err := Pull(context.Background(), tag, digest, accessAs(r, r.Password), WithFull(), WithPlatforms("linux/amd64", "linux/arm64"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rep.Platforms, " ") != "linux/amd64 linux/arm64/v8" || !strings.Contains(rep.MediaType, "index") {
		t.Errorf("report %+v", rep)
	}
}

// TestFullPullFindsCorruptLayer: a layer whose bytes changed on the
// registry's disk (its size kept) is found by WithFull, and only by it.
func TestFullPullFindsCorruptLayer(t *testing.T) {
	testenv.NeedStack(t)
	r := startRegistry(t)
	c, err := r.CorruptImage(context.Background(), "verify/corrupt")
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(c.Ref)
	if err != nil {
		t.Fatal(err)
	}
	a := accessAs(r, r.Password)
	if _, err := Pull(context.Background(), tag, c.Digest, a); err != nil {
		t.Errorf("a pull of the manifests fails: %v", err)
	}
	_, err = Pull(context.Background(), tag, c.Digest, a, WithFull())
	want := fmt.Sprintf("layer %s does not match its digest or size (%d bytes read, %d expected)", c.Layer, c.Size, c.Size)
	if fail.ClassOf(err) != fail.Corrupt || !strings.Contains(err.Error(), want) || errors.Unwrap(err) == nil {
		t.Errorf("got %s %v, want corrupt-blob %q with the reader's error as cause", fail.ClassOf(err), err, want)
	}
}

// TestSignedThroughVerifier: Signed is sign.Verify with the Verifier's
// access: a signed digest verifies, an unsigned one is Unsigned.
func TestSignedThroughVerifier(t *testing.T) {
	testenv.NeedStack(t)
	r := startRegistry(t)
	ctx := context.Background()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := sign.LoadSigner(keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := accessAs(r, r.Password)
	tag, digest := push(t, r, "verify/signed", image(t, "linux", "amd64"))
	d := tag.Context().Digest(digest)
	v := New(a)
	if _, err := v.Signed(ctx, d, sign.Policy{Keys: []sign.Key{signer.Key()}}); fail.ClassOf(err) != fail.Unsigned {
		t.Errorf("before signing: %s %v, want unsigned", fail.ClassOf(err), err)
	}
	if _, err := sign.Image(ctx, d, signer, a); err != nil {
		t.Fatal(err)
	}
	got, err := v.Signed(ctx, d, sign.Policy{Keys: []sign.Key{signer.Key()}})
	if err != nil || got.Digest != digest || got.Key == "" {
		t.Errorf("after signing: %+v, %v", got, err)
	}
}
