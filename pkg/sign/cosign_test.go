package sign_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/sign"
)

// cosign verify's flags for a key and no Rekor, against the stack's CA.
// An empty trusted root keeps cosign from fetching Sigstore's public one
// (TUF): a key is all that is trusted here.
func verifyArgs(t *testing.T, pub string) []string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(root, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"--key", pub, "--insecure-ignore-tlog=true", "--offline=true", "--trusted-root", root, "--registry-cacert", stack.Registry.CAFile}
}

// TestCosignVerifiesIdopipe: what idopipe signed, cosign verifies with
// the public key: the index and a platform image (cosign verify), and
// the provenance (cosign verify-attestation --type slsaprovenance); with
// another key, cosign refuses.
func TestCosignVerifiesIdopipe(t *testing.T) {
	t.Parallel()
	testenv.NeedStack(t)
	ctx := context.Background()
	s, _, dir := keyPair(t)
	ref, children := pushIndex(t, "interop/idopipe-signed", "0.4.0")
	if _, err := sign.Image(ctx, ref, s, access()); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "cosign.pub")
	for _, d := range []string{ref.String(), ref.Context().Digest(children[1].String()).String()} {
		out, err := runCosign(t, nil, append(append([]string{"verify"}, verifyArgs(t, pub)...), d)...)
		if err != nil {
			t.Fatalf("cosign verify %s: %v\n%s", d, err, out)
		}
		if !strings.Contains(out, "docker-manifest-digest") {
			t.Errorf("cosign verify printed no payload:\n%s", out)
		}
		if strings.Contains(out, "TUF") {
			t.Errorf("cosign verify reached for Sigstore's TUF root:\n%s", out)
		}
	}
	// Each platform image's provenance is stored with it, its subject.
	for _, h := range children {
		d := ref.Context().Digest(h.String()).String()
		out, err := runCosign(t, nil, append(append([]string{"verify-attestation", "--type", "slsaprovenance"}, verifyArgs(t, pub)...), d)...)
		if err != nil {
			t.Fatalf("cosign verify-attestation %s: %v\n%s", d, err, out)
		}
	}
	_, _, otherDir := keyPair(t)
	if out, err := runCosign(t, nil, append(append([]string{"verify"}, verifyArgs(t, filepath.Join(otherDir, "cosign.pub"))...), ref.String())...); err == nil {
		t.Fatalf("cosign verify accepted another key:\n%s", out)
	}
}

// TestIdopipeVerifiesCosign: what cosign signed with a key pair that
// idopipe generated (no Rekor upload), idopipe verifies; in the tag scheme
// and in cosign's OCI 1.1 referrers mode (which this registry answers
// through the referrers tag fallback). cosign's own key pair (cosign
// generate-key-pair) signs for idopipe as well.
func TestIdopipeVerifiesCosign(t *testing.T) {
	t.Parallel()
	testenv.NeedStack(t)
	ctx := context.Background()
	_, k, dir := keyPair(t)
	env := []string{"COSIGN_PASSWORD=" + password}
	signArgs := []string{"sign", "--key", filepath.Join(dir, "cosign.key"), "--tlog-upload=false", "--yes", "--registry-cacert", stack.Registry.CAFile}

	tagged := pushImage(t, "interop/cosign-signed", "tags")
	if out, err := runCosign(t, env, append(signArgs, tagged.String())...); err != nil {
		t.Fatalf("cosign sign: %v\n%s", err, out)
	}
	if _, err := sign.Verify(ctx, tagged, sign.Policy{Keys: []sign.Key{k}}, access()); err != nil {
		t.Fatalf("idopipe does not verify cosign's signature: %v", err)
	}

	referred := pushImage(t, "interop/cosign-signed", "referrers")
	out, err := runCosign(t, append(env, "COSIGN_EXPERIMENTAL=1"), append(signArgs, "--registry-referrers-mode=oci-1-1", referred.String())...)
	if err != nil {
		t.Fatalf("cosign sign --registry-referrers-mode=oci-1-1: %v\n%s", err, out)
	}
	if _, err := sign.Verify(ctx, referred, sign.Policy{Keys: []sign.Key{k}}, access()); err != nil {
		t.Fatalf("idopipe does not verify cosign's OCI 1.1 signature: %v", err)
	}

	// cosign's own key pair.
	kdir := t.TempDir()
	gen, err := runCosignIn(t, kdir, env, "generate-key-pair")
	if err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, gen)
	}
	cs, err := sign.LoadSigner(filepath.Join(kdir, "cosign.key"), func() ([]byte, error) { return []byte(password), nil })
	if err != nil {
		t.Fatalf("idopipe cannot load cosign's key: %v", err)
	}
	own := pushImage(t, "interop/cosign-signed", "own-key")
	if _, err := sign.Image(ctx, own, cs, access()); err != nil {
		t.Fatal(err)
	}
	ck, err := sign.LoadKey(filepath.Join(kdir, "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := runCosign(t, nil, append(append([]string{"verify"}, verifyArgs(t, filepath.Join(kdir, "cosign.pub"))...), own.String())...); err != nil {
		t.Fatalf("cosign verify with its own key: %v\n%s", err, out)
	}
	// And a cosign key does not verify what another key signed.
	_, err = sign.Verify(ctx, tagged, sign.Policy{Keys: []sign.Key{ck}}, access())
	wantClass(t, err, fail.Unsigned, "none valid")
}
