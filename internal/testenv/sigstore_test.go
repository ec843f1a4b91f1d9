package testenv

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// TestSigstore starts the registry and the Sigstore instance and checks
// them with the real clients: Fulcio refuses a token lacking any claim its
// github-workflow type requires and certifies a full one; cosign v3 signs
// keyless against the instance and verifies by identity; gh verifies an
// attestation cosign v3 made, offline, against the stack's trusted root.
func TestSigstore(t *testing.T) {
	t.Parallel()
	NeedStack(t)
	ctx := context.Background()
	start := time.Now()
	s, err := Start(ctx, "", Parts{Registry: true, Sigstore: true, Held: machineLocks(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	t.Logf("registry and sigstore up in %s", time.Since(start).Round(time.Millisecond))
	sg := s.Sigstore
	for _, p := range []string{sg.TrustedRoot, sg.TrustedRootNoLog} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(string(b), "\n") != 1 || !strings.HasSuffix(string(b), "\n") {
			t.Errorf("%s is not one line of JSON ending in a newline (gh reads JSON lines)", p)
		}
		if _, err := root.NewTrustedRootFromJSON(b); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if _, err := root.NewSigningConfigFromPath(sg.SigningConfig); err != nil {
		t.Errorf("signing config: %v", err)
	}

	t.Run("fulcio", func(t *testing.T) { testFulcio(ctx, t, sg) })
	t.Run("cosign", func(t *testing.T) { testCosign(ctx, t, s) })
	t.Run("restart", func(t *testing.T) { testRestart(ctx, t, s) })
	t.Run("one TSA per machine", func(t *testing.T) {
		// This instance holds the machine's TSA lock: a second one waits.
		short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		other, err := startSigstore(short, s.Tools, t.TempDir(), nil)
		if err == nil {
			other.Stop()
			t.Fatal("a second Sigstore instance started beside the first")
		}
		if !strings.Contains(err.Error(), tsaLock) {
			t.Errorf("the second instance failed, but not waiting for %s: %v", tsaLock, err)
		}
	})
}

// certificate asks Fulcio for a certificate with sigstore-go's client.
func certificate(ctx context.Context, sg *Sigstore, token string) (*x509.Certificate, error) {
	kp, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		return nil, err
	}
	f := sign.NewFulcio(&sign.FulcioOptions{BaseURL: sg.FulcioURL, Timeout: 10 * time.Second, Retries: 0})
	der, err := f.GetCertificate(ctx, kp, &sign.CertificateProviderOptions{IDToken: token})
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func testFulcio(ctx context.Context, t *testing.T, sg *Sigstore) {
	c := GitHubClaims{Repository: "acme/app", Ref: "refs/tags/v1.2.0", Workflow: ".github/workflows/release.yml", EventName: "push"}
	tok, err := sg.Token(c)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := certificate(ctx, sg, tok)
	if err != nil {
		t.Fatalf("Fulcio refused a full token: %v", err)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != c.SAN() {
		t.Errorf("certificate SAN %v, want %s", cert.URIs, c.SAN())
	}
	exts := map[string]string{}
	for _, e := range cert.Extensions {
		exts[e.Id.String()] = string(e.Value)
	}
	// 1.3.6.1.4.1.57264.1.8 is the issuer (v2), .1.12 the source repository URI (fulcio docs/oid-info.md).
	if v := exts["1.3.6.1.4.1.57264.1.8"]; !strings.Contains(v, sg.IssuerURL) {
		t.Errorf("issuer extension %q does not name %s", v, sg.IssuerURL)
	}
	if v := exts["1.3.6.1.4.1.57264.1.12"]; !strings.Contains(v, "https://github.com/acme/app") {
		t.Errorf("source repository extension %q", v)
	}
	pool := x509.NewCertPool()
	tr, err := root.NewTrustedRootFromPath(sg.TrustedRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, ca := range tr.FulcioCertificateAuthorities() {
		pool.AddCert(ca.(*root.FulcioCertificateAuthority).Root)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}); err != nil {
		t.Errorf("the certificate does not chain to the trusted root's Fulcio CA: %v", err)
	}
	for _, claim := range fulcioGitHubClaims {
		tok, err := sg.Token(GitHubClaims{Omit: []string{claim}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := certificate(ctx, sg, tok); err == nil {
			t.Errorf("Fulcio certified a token without %s", claim)
		}
	}
	log, err := os.ReadFile(sg.fulcio.proc.log)
	if err != nil {
		t.Fatal(err)
	}
	for _, claim := range fulcioGitHubClaims {
		if !strings.Contains(string(log), "missing "+claim+" claim") {
			t.Errorf("Fulcio's log does not say it refused a token for lacking %s", claim)
		}
	}
	for what, c := range map[string]GitHubClaims{
		"audience":    {Audience: "https://github.com/acme"},
		"expired":     {IssuedAt: time.Now().Add(-time.Hour), Lifetime: 5 * time.Minute},
		"other owner": {Repository: "evil/app"}, // not refused: shows the check above is by claims, not by luck
	} {
		tok, err := sg.Token(c)
		if err != nil {
			t.Fatal(err)
		}
		_, err = certificate(ctx, sg, tok)
		if what == "other owner" {
			if err != nil {
				t.Errorf("Fulcio refused a full token for another repository: %v", err)
			}
		} else if err == nil {
			t.Errorf("Fulcio certified a token with a wrong %s", what)
		}
	}
}

// pushRandom pushes a random image to the stack's registry and returns its
// digest reference.
func pushRandom(ctx context.Context, t *testing.T, s *Stack, repo string) name.Digest {
	t.Helper()
	client, err := s.Registry.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(s.Registry.Host + "/" + repo + ":1")
	if err != nil {
		t.Fatal(err)
	}
	auth := authn.FromConfig(authn.AuthConfig{Username: s.Registry.Username, Password: s.Registry.Password})
	if err := remote.Write(tag, img, remote.WithContext(ctx), remote.WithTransport(client.Transport), remote.WithAuth(auth)); err != nil {
		t.Fatal(err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return tag.Context().Digest(h.String())
}

// clientEnv is a home for a registry client (cosign, gh): a docker config
// with the registry's credentials (never argv), its CA as the trusted
// roots (SSL_CERT_FILE: gh has no flag for it), and nothing else of ours.
func clientEnv(t *testing.T, s *Stack) (dir string, env []string) {
	t.Helper()
	dir = t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(s.Registry.Username + ":" + s.Registry.Password))
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, s.Registry.Host, auth)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "DOCKER_CONFIG=" + dir, "SSL_CERT_FILE=" + s.Registry.CAFile,
		"TUF_ROOT=" + filepath.Join(dir, "tuf"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "config"), "XDG_CACHE_HOME=" + filepath.Join(dir, "cache"),
	}
}

// tool runs one of the stack's pinned tools.
func tool(t *testing.T, s *Stack, env []string, bin string, args ...string) (string, error) {
	t.Helper()
	p := filepath.Join(s.Tools, bin)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is not in the tools directory %s: run `make tools`", bin, s.Tools)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// writeToken writes an ID token to a file of its own (0600): cosign takes
// --identity-token as a value or a path, and a path keeps it off argv.
func writeToken(t *testing.T, sg *Sigstore, c GitHubClaims) string {
	t.Helper()
	tok, err := sg.Token(c)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testCosign: cosign v3 against the instance. The stack has no CT log
// (Fulcio runs without one, as the issue asks), so verification takes
// --insecure-ignore-sct; GitHub's instance has none either.
func testCosign(ctx context.Context, t *testing.T, s *Stack) {
	sg := s.Sigstore
	c := GitHubClaims{Repository: "acme/app", Ref: "refs/tags/v1.2.0", Workflow: ".github/workflows/release.yml"}
	dir, env := clientEnv(t, s)
	_ = dir

	t.Run("sign and verify", func(t *testing.T) {
		ref := pushRandom(ctx, t, s, "acme/signed")
		start := time.Now()
		out, err := tool(t, s, env, "cosign3", "sign", "--yes", "--identity-token", writeToken(t, sg, c),
			"--signing-config", sg.SigningConfig, "--trusted-root", sg.TrustedRoot, ref.String())
		if err != nil {
			t.Fatalf("cosign sign: %v\n%s", err, out)
		}
		t.Logf("cosign3 sign (keyless, TSA + Rekor v2) took %s", time.Since(start).Round(time.Millisecond))
		start = time.Now()
		out, err = tool(t, s, env, "cosign3", "verify", "--certificate-identity", c.SAN(), "--certificate-oidc-issuer", sg.IssuerURL,
			"--trusted-root", sg.TrustedRoot, "--insecure-ignore-sct", ref.String())
		if err != nil {
			t.Fatalf("cosign verify refused what cosign signed: %v\n%s", err, out)
		}
		t.Logf("cosign3 verify took %s", time.Since(start).Round(time.Millisecond))
		other := GitHubClaims{Repository: "acme/app", Ref: "refs/tags/v1.2.0", Workflow: ".github/workflows/other.yml"}.SAN()
		out, err = tool(t, s, env, "cosign3", "verify", "--certificate-identity", other, "--certificate-oidc-issuer", sg.IssuerURL,
			"--trusted-root", sg.TrustedRoot, "--insecure-ignore-sct", ref.String())
		if err == nil {
			t.Fatalf("cosign verify accepted another workflow's identity:\n%s", out)
		}
		if !strings.Contains(out, "no matching CertificateIdentity found") {
			t.Errorf("cosign verify refused another identity, but not for it:\n%s", out)
		}
		out, err = tool(t, s, env, "cosign3", "verify", "--certificate-identity", c.SAN(), "--certificate-oidc-issuer", "https://token.actions.githubusercontent.com",
			"--trusted-root", sg.TrustedRoot, "--insecure-ignore-sct", ref.String())
		if err == nil {
			t.Fatalf("cosign verify accepted another issuer:\n%s", out)
		}
		if !strings.Contains(out, sg.IssuerURL) {
			t.Errorf("cosign verify refused another issuer, but does not name the one it found:\n%s", out)
		}
	})

	t.Run("without a log", func(t *testing.T) {
		// GitHub's own instance: Fulcio and a TSA, no transparency log.
		ref := pushRandom(ctx, t, s, "acme/private")
		out, err := tool(t, s, env, "cosign3", "sign", "--yes", "--identity-token", writeToken(t, sg, c),
			"--signing-config", sg.SigningConfigNoLog, "--trusted-root", sg.TrustedRootNoLog, ref.String())
		if err != nil {
			t.Fatalf("cosign sign: %v\n%s", err, out)
		}
		out, err = tool(t, s, env, "cosign3", "verify", "--certificate-identity", c.SAN(), "--certificate-oidc-issuer", sg.IssuerURL,
			"--trusted-root", sg.TrustedRootNoLog, "--use-signed-timestamps", "--insecure-ignore-tlog", "--insecure-ignore-sct", ref.String())
		if err != nil {
			t.Fatalf("cosign verify: %v\n%s", err, out)
		}
	})

	t.Run("gh attestation verify", func(t *testing.T) {
		ref := pushRandom(ctx, t, s, "acme/attested")
		pred := filepath.Join(t.TempDir(), "provenance.json")
		if err := os.WriteFile(pred, []byte(`{"buildDefinition":{"buildType":"https://actions.github.io/buildtypes/workflow/v1","externalParameters":{}},"runDetails":{"builder":{"id":"https://github.com/actions/runner"}}}`), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := tool(t, s, env, "cosign3", "attest", "--yes", "--identity-token", writeToken(t, sg, c),
			"--signing-config", sg.SigningConfig, "--trusted-root", sg.TrustedRoot,
			"--type", "slsaprovenance1", "--predicate", pred, ref.String())
		if err != nil {
			t.Fatalf("cosign attest: %v\n%s", err, out)
		}
		gh := append(env, "GH_NO_UPDATE_NOTIFIER=1", "GH_PROMPT_DISABLED=1", "GH_CONFIG_DIR="+filepath.Join(t.TempDir(), "gh"))
		args := []string{"attestation", "verify", "oci://" + ref.String(), "--bundle-from-oci", "--custom-trusted-root", sg.TrustedRoot,
			"--cert-oidc-issuer", sg.IssuerURL, "--owner", "acme"}
		// gh insists on a GitHub token for any command but one reading
		// --bundle from a file, even when it calls no GitHub API: with
		// none it stops before it starts.
		out, err = tool(t, s, gh, "gh", args...)
		if err == nil || !strings.Contains(out, "gh auth login") {
			t.Errorf("gh without a token: %v\n%s", err, out)
		}
		gh = append(gh, "GH_TOKEN=not-used-offline")
		args = append(args, "--format", "json")
		start := time.Now()
		out, err = tool(t, s, gh, "gh", args...)
		if err != nil {
			t.Fatalf("gh attestation verify refused cosign's attestation: %v\n%s", err, out)
		}
		t.Logf("gh attestation verify took %s", time.Since(start).Round(time.Millisecond))
		var results []struct {
			VerificationResult struct {
				Signature struct {
					Certificate struct {
						SubjectAlternativeName string `json:"subjectAlternativeName"`
						Issuer                 string `json:"issuer"`
					} `json:"certificate"`
				} `json:"signature"`
				VerifiedTimestamps []struct{ Type string } `json:"verifiedTimestamps"`
			} `json:"verificationResult"`
		}
		if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), &results); err != nil || len(results) != 1 {
			t.Fatalf("gh's JSON: %v\n%s", err, out)
		}
		got := results[0].VerificationResult
		if got.Signature.Certificate.SubjectAlternativeName != c.SAN() || got.Signature.Certificate.Issuer != sg.IssuerURL {
			t.Errorf("gh verified %+v, want SAN %s from %s", got.Signature.Certificate, c.SAN(), sg.IssuerURL)
		}
		if len(got.VerifiedTimestamps) == 0 {
			t.Errorf("gh verified no timestamp: %s", out)
		}
		t.Logf("gh verified timestamps: %+v", got.VerifiedTimestamps)
		// With the bundle in a file gh needs no token at all: fully
		// offline, as `gh attestation download` + verify would run.
		bundle := filepath.Join(t.TempDir(), "bundle.jsonl")
		if err := os.WriteFile(bundle, append(storedBundle(ctx, t, s, ref), '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		noToken := gh[:len(gh)-1]
		out, err = tool(t, s, noToken, "gh", "attestation", "verify", "oci://"+ref.String(), "--bundle", bundle, "--custom-trusted-root", sg.TrustedRoot,
			"--cert-oidc-issuer", sg.IssuerURL, "--owner", "acme")
		if err != nil {
			t.Fatalf("gh attestation verify --bundle without a token: %v\n%s", err, out)
		}
		out, err = tool(t, s, gh, "gh", "attestation", "verify", "oci://"+ref.String(), "--bundle-from-oci", "--custom-trusted-root", sg.TrustedRoot,
			"--cert-oidc-issuer", sg.IssuerURL, "--owner", "other")
		if err == nil {
			t.Fatalf("gh attestation verify accepted another owner:\n%s", out)
		}
	})
}

// storedBundle is the Sigstore bundle stored as a referrer of ref (the
// one cosign attest wrote), read with go-containerregistry.
func storedBundle(ctx context.Context, t *testing.T, s *Stack, ref name.Digest) []byte {
	t.Helper()
	client, err := s.Registry.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	auth := authn.FromConfig(authn.AuthConfig{Username: s.Registry.Username, Password: s.Registry.Password})
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(client.Transport), remote.WithAuth(auth)}
	idx, err := remote.Referrers(ref, opts...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Manifests {
		if !strings.HasPrefix(d.ArtifactType, "application/vnd.dev.sigstore.bundle") {
			continue
		}
		img, err := remote.Image(ref.Context().Digest(d.Digest.String()), opts...)
		if err != nil {
			t.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("bundle referrer %s: %d layers, %v", d.Digest, len(layers), err)
		}
		rc, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Fatalf("no Sigstore bundle among the referrers of %s: %+v", ref, m.Manifests)
	return nil
}

// testRestart stops each server and starts it again: the URL refuses
// while it is down, and after the restart Fulcio still certifies with the
// CA the trusted root names, and cosign signs and verifies against the
// same trusted root.
func testRestart(ctx context.Context, t *testing.T, s *Stack) {
	sg := s.Sigstore
	for _, d := range []struct {
		name  string
		url   string
		stop  func()
		start func(context.Context) error
	}{
		{"fulcio", sg.FulcioURL, sg.StopFulcio, sg.StartFulcio},
		{"tsa", sg.TSAURL, sg.StopTSA, sg.StartTSA},
		{"rekor", sg.RekorURL, sg.StopRekor, sg.StartRekor},
	} {
		d.stop()
		if resp, err := http.Get(d.url); err == nil {
			resp.Body.Close()
			t.Errorf("%s answers at %s while stopped", d.name, d.url)
		}
		start := time.Now()
		if err := d.start(ctx); err != nil {
			t.Fatalf("%s did not start again: %v", d.name, err)
		}
		t.Logf("%s restarted in %s", d.name, time.Since(start).Round(time.Millisecond))
	}
	resp, err := http.Get(sg.FulcioURL + "/api/v2/trustBundle")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var bundle struct {
		Chains []struct{ Certificates []string } `json:"chains"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil || len(bundle.Chains) == 0 || len(bundle.Chains[0].Certificates) == 0 {
		t.Fatalf("trust bundle %s: %v", b, err)
	}
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(bundle.Chains[0].Certificates[0]))
	if err != nil || len(certs) == 0 {
		t.Fatalf("trust bundle certificate: %v", err)
	}
	if !certs[0].Equal(sg.fulcio.pki.chain[0]) {
		t.Error("Fulcio's CA changed across a restart")
	}
	c := GitHubClaims{}
	_, env := clientEnv(t, s)
	ref := pushRandom(ctx, t, s, "acme/after-restart")
	out, err := tool(t, s, env, "cosign3", "sign", "--yes", "--identity-token", writeToken(t, sg, c),
		"--signing-config", sg.SigningConfig, "--trusted-root", sg.TrustedRoot, ref.String())
	if err != nil {
		t.Fatalf("cosign sign after the restarts: %v\n%s", err, out)
	}
	out, err = tool(t, s, env, "cosign3", "verify", "--certificate-identity", c.SAN(), "--certificate-oidc-issuer", sg.IssuerURL,
		"--trusted-root", sg.TrustedRoot, "--insecure-ignore-sct", ref.String())
	if err != nil {
		t.Fatalf("cosign verify after the restarts: %v\n%s", err, out)
	}
}
