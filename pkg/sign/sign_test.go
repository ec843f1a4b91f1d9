package sign_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/sign"
)

const password = "correct horse battery staple"

// keyPair generates cosign.key and cosign.pub in a directory of its own.
func keyPair(t *testing.T) (sign.Signer, sign.Key, string) {
	t.Helper()
	dir := t.TempDir()
	priv, pub, err := sign.Generate(dir, []byte(password), false)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign.LoadSigner(priv, func() ([]byte, error) { return []byte(password), nil })
	if err != nil {
		t.Fatal(err)
	}
	k, err := sign.LoadKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return s, k, dir
}

func wantClass(t *testing.T, err error, c fail.Class, words ...string) {
	t.Helper()
	t.Logf("refused as wanted: %v", err)
	if fail.ClassOf(err) != c {
		t.Fatalf("error %v has class %s, want %s", err, fail.ClassOf(err), c)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

// TestKeys: a generated pair loads with its password and not without;
// the files are cosign's (encrypted PEM type, mode 600); a plain PEM
// private key signs too; a public key is refused as a signing key and the
// other way round.
func TestKeys(t *testing.T) {
	t.Parallel()
	testenv.NeedStack(t)
	dir := t.TempDir()
	priv, pub, err := sign.Generate(dir, []byte(password), false)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(priv)
	if blk, _ := pem.Decode(b); blk == nil || blk.Type != "ENCRYPTED SIGSTORE PRIVATE KEY" {
		t.Fatalf("cosign.key is not cosign's encrypted PEM: %.60s", b)
	}
	if st, _ := os.Stat(priv); st.Mode().Perm() != 0o600 {
		t.Errorf("cosign.key has mode %v, want 600", st.Mode().Perm())
	}
	if strings.Contains(string(b), password) {
		t.Error("the password is in the key file")
	}
	if _, _, err := sign.Generate(dir, []byte(password), false); err == nil {
		t.Error("Generate replaced an existing key pair without force")
	}
	if _, _, err := sign.Generate(t.TempDir(), nil, false); err == nil {
		t.Error("Generate wrote an unencrypted key for want of a password")
	}
	_, err = sign.LoadSigner(priv, func() ([]byte, error) { return []byte("wrong"), nil })
	wantClass(t, err, fail.Usage, priv, "password")
	if strings.Contains(err.Error(), password) {
		t.Error("the error shows a password")
	}
	_, err = sign.LoadSigner(priv, nil)
	wantClass(t, err, fail.Usage, "COSIGN_PASSWORD")
	_, err = sign.LoadSigner(pub, nil)
	wantClass(t, err, fail.Usage, "public key")
	_, err = sign.LoadKey(priv)
	wantClass(t, err, fail.Usage, "private key")

	// A plain PEM EC key, as openssl writes one.
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(ec)
	plain := filepath.Join(dir, "plain.pem")
	if err := os.WriteFile(plain, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := sign.LoadSigner(plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := pushImage(t, "keys/plain", "v1")
	if _, err := sign.Image(context.Background(), ref, s, access()); err != nil {
		t.Fatal(err)
	}
	if _, err := sign.Verify(context.Background(), ref, sign.Policy{Keys: []sign.Key{s.Key()}}, access()); err != nil {
		t.Fatal(err)
	}
}

// TestSignIndex: an index is signed with each platform image and its
// provenance; the index itself is not changed (no unknown/unknown entry is
// added); each digest verifies, and the provenance says source, revision
// and builder.
func TestSignIndex(t *testing.T) {
	t.Parallel()
	testenv.NeedStack(t)
	ctx := context.Background()
	s, k, _ := keyPair(t)
	ref, children := pushIndex(t, "sign/index", "0.4.0")
	before := indexManifest(t, ref)
	res, err := sign.Image(ctx, ref, s, access())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Digests) != 3 || res.Digests[0] != ref.DigestStr() || res.Attestations != 2 || res.Already != 0 {
		t.Fatalf("signed %+v, want the index first, then 2 images, and 2 attestations", res)
	}
	after := indexManifest(t, ref)
	if len(after.Manifests) != len(before.Manifests) {
		t.Fatalf("signing changed the index: %d entries, was %d", len(after.Manifests), len(before.Manifests))
	}
	tag := tagRef(t, "sign/index", "0.4.0")
	if d, err := remote.Head(tag, remoteOpts(t, access())...); err != nil || d.Digest.String() != ref.DigestStr() {
		t.Fatalf("the tag moved: %v %v", d, err)
	}
	for _, h := range append(children, mustHash(t, ref.DigestStr())) {
		if _, err := sign.Verify(ctx, ref.Context().Digest(h.String()), sign.Policy{Keys: []sign.Key{k}}, access()); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	v, err := sign.Verify(ctx, ref, sign.Policy{Keys: []sign.Key{k}}, access(), sign.WithSourceRepo("git@github.com:intel/intent-driven-orchestration.git"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Key != k.String() || len(v.Provenance) != 2 {
		t.Fatalf("verified %+v", v)
	}
	p := v.Provenance[0]
	if !p.Signed || p.Source != "https://github.com/intel/intent-driven-orchestration" || p.Revision != "0123456789abcdef0123456789abcdef01234567" || p.Builder == "" {
		t.Errorf("provenance %+v", p)
	}
	_, err = sign.Verify(ctx, ref, sign.Policy{Keys: []sign.Key{k}}, access(), sign.WithSourceRepo("https://github.com/someone/else"))
	wantClass(t, err, fail.Unsigned, "someone/else", "intent-driven-orchestration")

	// The unsigned view is BuildKit's own, marked so.
	provs, err := sign.ReadProvenance(ctx, ref, access())
	if err != nil || len(provs) != 2 || provs[0].Signed {
		t.Errorf("unsigned provenance %+v %v", provs, err)
	}

	// A rerun makes nothing again: one signature per digest.
	res, err = sign.Image(ctx, ref, s, access())
	if err != nil {
		t.Fatal(err)
	}
	if res.Already != 5 {
		t.Errorf("rerun: %+v, want all 5 already there", res)
	}
	if n := layers(t, sign.SignatureTag(ref.Context(), mustHash(t, ref.DigestStr()))); n != 1 {
		t.Errorf("the index's .sig has %d layers after a rerun, want 1", n)
	}
	for _, h := range children {
		if n := layers(t, sign.AttestationTag(ref.Context(), h)); n != 1 {
			t.Errorf("the .att of %s has %d layers after a rerun, want 1", h, n)
		}
	}
	// A second key adds its signature beside the first: both verify.
	s2, k2, _ := keyPair(t)
	if _, err := sign.Image(ctx, ref, s2, access()); err != nil {
		t.Fatal(err)
	}
	for _, key := range []sign.Key{k, k2} {
		if _, err := sign.Verify(ctx, ref, sign.Policy{Keys: []sign.Key{key}}, access()); err != nil {
			t.Errorf("%s: %v", key, err)
		}
	}
}

// TestRefusals: an unsigned image, a wrong key, a signature copied from
// another digest and a tampered signature are all refused, each with its
// own words, class Unsigned, naming the image, the digest and the keys.
func TestRefusals(t *testing.T) {
	t.Parallel()
	testenv.NeedStack(t)
	ctx := context.Background()
	s, k, _ := keyPair(t)
	_, other, _ := keyPair(t)
	a := pushImage(t, "refuse/app", "a")
	b := pushImage(t, "refuse/app", "b")
	if _, err := sign.Image(ctx, a, s, access()); err != nil {
		t.Fatal(err)
	}

	_, err := sign.Verify(ctx, b, sign.Policy{Keys: []sign.Key{k}}, access())
	wantClass(t, err, fail.Unsigned, "not signed", "refuse/app", b.DigestStr(), k.ID)

	_, err = sign.Verify(ctx, a, sign.Policy{Keys: []sign.Key{other}}, access())
	wantClass(t, err, fail.Unsigned, "none valid", a.DigestStr(), other.ID)
	// Either key will do.
	if _, err := sign.Verify(ctx, a, sign.Policy{Keys: []sign.Key{other, k}}, access()); err != nil {
		t.Errorf("with the right key second: %v", err)
	}

	// a's signature manifest, copied to b's signature tag.
	opts := remoteOpts(t, access())
	sigA, err := remote.Image(sign.SignatureTag(a.Context(), mustHash(t, a.DigestStr())), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(sign.SignatureTag(b.Context(), mustHash(t, b.DigestStr())), sigA, opts...); err != nil {
		t.Fatal(err)
	}
	_, err = sign.Verify(ctx, b, sign.Policy{Keys: []sign.Key{k}}, access())
	wantClass(t, err, fail.Unsigned, "another digest", a.DigestStr(), b.DigestStr())

	// A tampered payload: the claimed digest changed, the signature kept.
	c := pushImage(t, "refuse/app", "c")
	if _, err := sign.Image(ctx, c, s, access()); err != nil {
		t.Fatal(err)
	}
	sigTag := sign.SignatureTag(c.Context(), mustHash(t, c.DigestStr()))
	orig, err := remote.Image(sigTag, opts...)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := orig.Manifest()
	l, _ := orig.LayerByDigest(m.Layers[0].Digest)
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	tampered := []byte(strings.Replace(string(body), "refuse/app", "refuse/evil", 1))
	img, err := mutate.Append(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON), mutate.Addendum{
		Layer: static.NewLayer(tampered, sign.SimpleSigningMediaType), Annotations: m.Layers[0].Annotations,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(sigTag, img, opts...); err != nil {
		t.Fatal(err)
	}
	_, err = sign.Verify(ctx, c, sign.Policy{Keys: []sign.Key{k}}, access())
	wantClass(t, err, fail.Unsigned, "none valid", c.DigestStr())
}

// TestStoreFails: a registry that refuses the signature's manifest leaves
// the image unsigned, with a registry error that says so; a rerun
// through a working registry completes the signature.
func TestStoreFails(t *testing.T) {
	t.Parallel()
	testenv.NeedStack(t)
	ctx := context.Background()
	s, k, _ := keyPair(t)
	ref := pushImage(t, "fails/app", "v1")
	proxy, err := stack.Registry.StartProxy(t.TempDir(), func(r *http.Request) (int, string, bool) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/sha256-") {
			return http.StatusServiceUnavailable, `{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}`, true
		}
		return 0, "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	via := access()
	via.CAFile = proxy.CAFile
	viaRef, err := name.NewDigest(proxy.Host + "/fails/app@" + ref.DigestStr())
	if err != nil {
		t.Fatal(err)
	}
	_, err = sign.Image(ctx, viaRef, s, via)
	wantClass(t, err, fail.Registry, "not signed", "rerun")
	if proxy.Count(http.MethodPut, "/v2/fails/app/manifests/sha256-") == 0 {
		t.Fatal("the signature's manifest never reached the proxy")
	}
	_, err = sign.Verify(ctx, ref, sign.Policy{Keys: []sign.Key{k}}, access())
	wantClass(t, err, fail.Unsigned, "not signed")

	if _, err := sign.Image(ctx, ref, s, access()); err != nil {
		t.Fatal(err)
	}
	if _, err := sign.Verify(ctx, ref, sign.Policy{Keys: []sign.Key{k}}, access()); err != nil {
		t.Fatal(err)
	}
}

func indexManifest(t *testing.T, ref name.Digest) *v1.IndexManifest {
	t.Helper()
	idx, err := remote.Index(ref, remoteOpts(t, access())...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Manifests {
		if strings.Contains(d.ArtifactType, "cosign") || strings.Contains(string(d.MediaType), "cosign") {
			t.Errorf("index entry %+v is not an image or BuildKit attestation", d)
		}
	}
	return m
}

func layers(t *testing.T, tag name.Tag) int {
	t.Helper()
	img, err := remote.Image(tag, remoteOpts(t, access())...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return len(m.Layers)
}

func mustHash(t *testing.T, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
