package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/fail"
)

// The keyless tests sign against the stack's own Sigstore instance: an
// OIDC issuer shaped like GitHub's (with the runner's token endpoint),
// Fulcio, the timestamp authority and Rekor v2, on loopback.

// keylessRepo is the GitHub repository the tests' workflow runs in.
const keylessRepo = "idopipe-e2e/ido"

// releaseClaims are the claims of a tag-push release workflow of keylessRepo.
func releaseClaims() testenv.GitHubClaims {
	return testenv.GitHubClaims{Repository: keylessRepo, Ref: "refs/tags/v0.4.0", Workflow: ".github/workflows/release.yml", EventName: "push"}
}

// sigstoreArgs point idopipe at the stack's instance.
func sigstoreArgs() []string {
	s := stack.Sigstore
	return []string{"--fulcio-url", s.FulcioURL, "--rekor-url", s.RekorURL, "--timestamp-url", s.TSAURL, "--trusted-root", s.TrustedRoot}
}

// actionsEnv is a GitHub Actions job with id-token: write: the runner's
// token request pair, whose tokens carry c.
func actionsEnv(c testenv.GitHubClaims) []string {
	url, tok := stack.Sigstore.ActionsRequest(c)
	return []string{"ACTIONS_ID_TOKEN_REQUEST_URL=" + url, "ACTIONS_ID_TOKEN_REQUEST_TOKEN=" + tok}
}

// tokenFile writes a token with claims c to a file of its own (mode 600)
// and returns its path and the token, to grep the output for.
func tokenFile(t *testing.T, c testenv.GitHubClaims) (string, string) {
	t.Helper()
	tok, err := stack.Sigstore.Token(c)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "oidc-token")
	if err := os.WriteFile(p, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, tok
}

var jwtShape = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)

// noOIDCToken fails t when r's output holds anything shaped like a JWT,
// or one of tokens.
func noOIDCToken(t *testing.T, r result, tokens ...string) {
	t.Helper()
	out := r.stdout + r.stderr
	if m := jwtShape.FindString(out); m != "" {
		t.Errorf("an OIDC token is in the output:\n%s", r)
	}
	for _, tok := range tokens {
		if tok != "" && strings.Contains(out, tok) {
			t.Errorf("the OIDC token is in the output:\n%s", r)
		}
	}
}

// TestKeylessRelease: in a GitHub Actions job (the runner's token
// endpoint), release --sign signs keyless: a Fulcio certificate naming the
// workflow, timestamped, logged in Rekor v2, stored as Sigstore bundles
// referring to the digest; the deploy gate checks the identity before the
// cluster stages. verify-pull shows who signed and when; another
// workflow's or another issuer's identity is refused (15); cosign v3 and
// gh attestation verify accept what idopipe wrote; a rerun signs nothing
// again; a deploy requiring another identity writes nothing.
func TestKeylessRelease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ns = "keyless"
	c := releaseClaims()
	san := c.SAN()
	issuer := stack.Sigstore.IssuerURL
	policy := []string{"--signer-repo", keylessRepo, "--certificate-oidc-issuer", issuer}
	args := releaseArgs(ns, append(append([]string{"--version", "0.4.0-keyless", "--provenance", "min", "--sign"}, sigstoreArgs()...), policy...)...)
	env := actionsEnv(c)
	r := idopipe(t, env, append(args, "-o", "json")...)
	noOIDCToken(t, r)
	if r.code != 0 {
		t.Fatalf("keyless release:\n%s", r)
	}
	if !strings.Contains(r.stdout, "with a certificate for "+san) || !strings.Contains(r.stdout, "1 provenance attestation(s)") {
		t.Errorf("the push line does not say what was signed, by whom:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "verified with "+san+" (issuer "+issuer+")") {
		t.Errorf("the release does not say the gate verified the identity:\n%s", r.stdout)
	}
	var out struct {
		Result struct {
			Digest string `json:"digest"`
		} `json:"result"`
	}
	if err := lastJSON(r, &out); err != nil || out.Result.Digest == "" {
		t.Fatalf("release -o json: %v\n%s", err, r)
	}
	res := out.Result
	ref := repoOf(ns) + ":0.4.0-keyless"
	pinned := repoOf(ns) + "@" + res.Digest

	v := idopipe(t, nil, append([]string{"verify-pull", ref, "--registry-ca", stack.Registry.CAFile,
		"--certificate-identity", san, "--certificate-oidc-issuer", issuer, "--trusted-root", stack.Sigstore.TrustedRoot}, "-o", "json")...)
	if v.code != 0 {
		t.Fatalf("verify-pull --certificate-identity:\n%s", v)
	}
	var vr struct {
		Result struct {
			Signature struct {
				Certificate struct {
					Subject, Issuer, Repository, Ref, Commit string
				} `json:"certificate"`
				Timestamp   *time.Time `json:"timestamp"`
				TimestampBy string     `json:"timestampBy"`
			} `json:"signature"`
		} `json:"result"`
	}
	if err := lastJSON(v, &vr); err != nil {
		t.Fatal(err)
	}
	sig := vr.Result.Signature
	cert := sig.Certificate
	if cert.Subject != san || cert.Issuer != issuer || !strings.Contains(cert.Repository, keylessRepo) || cert.Ref != c.Ref || cert.Commit == "" {
		t.Errorf("verify-pull's certificate: %+v, want %s from %s, %s at %s", cert, san, issuer, keylessRepo, c.Ref)
	}
	if ts := sig.Timestamp; ts == nil || time.Since(*ts) > 10*time.Minute || sig.TimestampBy == "" {
		t.Errorf("verify-pull shows no proven signing time: %v %q", ts, sig.TimestampBy)
	}
	human := idopipe(t, nil, "verify-pull", ref, "--registry-ca", stack.Registry.CAFile, "--signer-workflow", keylessRepo+"/.github/workflows/release.yml",
		"--certificate-oidc-issuer", issuer, "--trusted-root", stack.Sigstore.TrustedRoot)
	if human.code != 0 || !strings.Contains(human.stdout, "signed by "+san+" (issuer "+issuer) || !strings.Contains(human.stdout, "ref "+c.Ref) {
		t.Errorf("verify-pull --signer-workflow:\n%s", human)
	}

	// Another workflow of the same repository, another repository, another issuer.
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"another workflow", []string{"--certificate-identity", "https://github.com/" + keylessRepo + "/.github/workflows/nightly.yml@refs/heads/main", "--certificate-oidc-issuer", issuer}, "nightly.yml"},
		{"another repository", []string{"--signer-repo", "someone/fork", "--certificate-oidc-issuer", issuer}, "someone/fork"},
		{"another issuer", []string{"--certificate-identity", san}, "https://token.actions.githubusercontent.com"},
	} {
		w := idopipe(t, nil, append([]string{"verify-pull", ref, "--registry-ca", stack.Registry.CAFile, "--trusted-root", stack.Sigstore.TrustedRoot}, tc.args...)...)
		lines := strings.Split(strings.TrimSpace(w.stderr), "\n")
		if w.code != int(fail.Unsigned) || len(lines) != 1 || !strings.Contains(lines[0], res.Digest) || !strings.Contains(lines[0], tc.want) || !strings.Contains(lines[0], san) {
			t.Errorf("%s: want exit 15 and one line naming the digest, what was required (%s) and what the certificate says (%s):\n%s", tc.name, tc.want, san, w)
		}
	}

	// The peers accept what idopipe wrote.
	peerOut, err := cosign3(t, nil, "verify", "--certificate-identity", san, "--certificate-oidc-issuer", issuer,
		"--trusted-root", stack.Sigstore.TrustedRoot, "--insecure-ignore-sct", "--registry-cacert", stack.Registry.CAFile, pinned)
	if err != nil {
		t.Errorf("cosign v3 verify of idopipe's keyless signature: %v\n%s", err, peerOut)
	}
	peerOut, err = cosign3(t, nil, "verify-attestation", "--type", "slsaprovenance1", "--certificate-identity", san, "--certificate-oidc-issuer", issuer,
		"--trusted-root", stack.Sigstore.TrustedRoot, "--insecure-ignore-sct", "--registry-cacert", stack.Registry.CAFile, pinned)
	if err != nil {
		t.Errorf("cosign v3 verify-attestation of idopipe's provenance bundle: %v\n%s", err, peerOut)
	}
	peerOut, err = ghAttestation(t, "verify", "oci://"+pinned, "--bundle-from-oci", "--custom-trusted-root", stack.Sigstore.TrustedRoot,
		"--cert-oidc-issuer", issuer, "--owner", strings.Split(keylessRepo, "/")[0], "--format", "json")
	if err != nil || !strings.Contains(peerOut, san) {
		t.Errorf("gh attestation verify of idopipe's provenance bundle: %v\n%s", err, peerOut)
	}

	// The deploy gate with another identity writes nothing.
	const other = "keyless-other"
	d := idopipe(t, nil, "deploy", "--image", ref+"@"+res.Digest, "--registry-ca", stack.Registry.CAFile, "--manifest", manifestFor(other),
		"--crds", filepath.Join(fixtures, "intents_crds_v1alpha1.yaml"), "-n", other, "--trusted-root", stack.Sigstore.TrustedRoot,
		"--signer-workflow", keylessRepo+"/.github/workflows/nightly.yml", "--certificate-oidc-issuer", issuer)
	if d.code != int(fail.Unsigned) || !strings.Contains(d.stderr, res.Digest) {
		t.Errorf("deploy requiring another workflow: want exit 15 naming the digest:\n%s", d)
	}
	if _, err := stack.Cluster.Client.CoreV1().Namespaces().Get(ctx, other, metav1.GetOptions{}); err == nil {
		t.Errorf("namespace %s was created before the refusal", other)
		cleanupNamespace(t, other)
	}
}

// TestKeylessTokenRefused: a job whose OIDC token cannot be had or cannot
// be certified fails before the build, with one line naming the cause and
// the fix and exit 3 (credentials), and never prints the token.
func TestKeylessTokenRefused(t *testing.T) {
	t.Parallel()
	expired := releaseClaims()
	expired.IssuedAt, expired.Lifetime = time.Now().Add(-time.Hour), time.Minute
	expiredFile, expiredTok := tokenFile(t, expired)
	aud := releaseClaims()
	aud.Audience = "https://github.com/idopipe-e2e"
	audFile, audTok := tokenFile(t, aud)
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want []string
		tok  string
	}{
		{"no id-token permission", []string{"GITHUB_ACTIONS=true", "GITHUB_OUTPUT=" + filepath.Join(t.TempDir(), "out"), "GITHUB_STEP_SUMMARY=" + filepath.Join(t.TempDir(), "summary")},
			nil, []string{"no OIDC token", "permissions: id-token: write"}, ""},
		{"no token at all", nil, nil, []string{"no OIDC token", "--identity-token"}, ""},
		{"expired token", nil, []string{"--identity-token", expiredFile}, []string{"expired"}, expiredTok},
		{"audience Fulcio refuses", nil, []string{"--identity-token", audFile}, []string{"audience", "sigstore"}, audTok},
		{"runner refuses the request token", []string{"ACTIONS_ID_TOKEN_REQUEST_URL=" + strings.Split(stack.Sigstore.IssuerURL, "?")[0] + "/token?api-version=2.0", "ACTIONS_ID_TOKEN_REQUEST_TOKEN=wrong"},
			nil, []string{"id-token"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := "keyless-bad-" + strings.ToLower(strings.Fields(tc.name)[1])
			args := releaseArgs(ns, append(append([]string{"--version", "0.4.0-keyless-bad", "--sign"}, sigstoreArgs()...), tc.args...)...)
			// In Actions, idopipe masks the registry token first: that
			// line is the one place it may appear.
			r := idopipeRaw(t, append([]string{"SIGSTORE_ID_TOKEN="}, tc.env...), args...)
			assertNoToken(t, "stdout", strings.Replace(r.stdout, "::add-mask::"+stack.Registry.Password+"\n", "", 1))
			assertNoToken(t, "stderr", r.stderr)
			noOIDCToken(t, r, tc.tok)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if r.code != int(fail.Credentials) || len(lines) == 0 {
				t.Fatalf("want exit 3:\n%s", r)
			}
			for _, w := range tc.want {
				if !strings.Contains(lines[len(lines)-1], w) {
					t.Errorf("the error does not say %q: %s", w, lines[len(lines)-1])
				}
			}
			if strings.Contains(r.stdout, "==> build") {
				t.Errorf("the token was checked only after the build started:\n%s", r.stdout)
			}
		})
	}
}

// TestKeylessSigstoreDown: with Fulcio, the timestamp authority or Rekor
// down while signing, the image is pushed but not reported signed (exit
// 17, naming the service); once it is back, a rerun signs without pushing
// again. Serial: it stops the stack's services, which the parallel keyless
// tests use.
func TestKeylessSigstoreDown(t *testing.T) {
	ctx := context.Background()
	s := stack.Sigstore
	c := releaseClaims()
	for _, tc := range []struct {
		name        string
		stop        func()
		start       func(context.Context) error
		wantService string
	}{
		{"fulcio", s.StopFulcio, s.StartFulcio, s.FulcioURL},
		{"tsa", s.StopTSA, s.StartTSA, "timestamp"},
		{"rekor", s.StopRekor, s.StartRekor, "Rekor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			version := "0.4.0-down-" + tc.name
			args := releaseArgs("keyless-down-"+tc.name, append([]string{"--version", version, "--sign", "--to", "verify-pull", "-o", "json"}, sigstoreArgs()...)...)
			tc.stop()
			restarted := false
			defer func() {
				if !restarted {
					if err := tc.start(ctx); err != nil {
						t.Errorf("restart %s: %v", tc.name, err)
					}
				}
			}()
			r := idopipe(t, actionsEnv(c), args...)
			noOIDCToken(t, r)
			if r.code != int(fail.Sigstore) || !strings.Contains(r.stderr, tc.wantService) || !strings.Contains(r.stderr, "pushed but not signed") {
				t.Fatalf("signing with %s down: want exit 17 naming it and saying the image is pushed:\n%s", tc.name, r)
			}
			var out struct {
				Result struct {
					Digest string          `json:"digest"`
					Signed json.RawMessage `json:"signed"`
				} `json:"result"`
			}
			err := lastJSON(r, &out)
			if res := out.Result; err != nil || res.Digest == "" || len(res.Signed) > 0 && string(res.Signed) != "null" {
				t.Errorf("the result should report the pushed digest and no signature: %v\n%s", err, r.stdout)
			}
			if err := tc.start(ctx); err != nil {
				t.Fatal(err)
			}
			restarted = true
			again := idopipe(t, actionsEnv(c), args...)
			if again.code != 0 || !strings.Contains(again.stdout, "not pushed again") || !strings.Contains(again.stdout, "with a certificate for "+c.SAN()) {
				t.Fatalf("rerun once %s is back:\n%s", tc.name, again)
			}
			// Once more: what the signer's own identity already signed is
			// kept, nothing is signed or stored again.
			var third struct {
				Result struct {
					Signed []struct {
						Digests []string `json:"digests"`
						Already int      `json:"already"`
						Bundles []string `json:"bundles"`
					} `json:"signed"`
				} `json:"result"`
			}
			r3 := idopipe(t, actionsEnv(c), args...)
			if err := lastJSON(r3, &third); err != nil || r3.code != 0 || len(third.Result.Signed) != 1 {
				t.Fatalf("third run: %v\n%s", err, r3)
			}
			if s := third.Result.Signed[0]; s.Already != len(s.Digests) || len(s.Bundles) != 0 {
				t.Errorf("a run after a signed one signed again: %+v", s)
			}
		})
	}
}

// TestCosignV3SignaturesVerified: what cosign v3 signs (keyless against
// the stack's instance, and with a key, both in its bundle format stored
// as OCI referrers) passes idopipe's verify-pull and its deploy gate
// policy; another identity is refused.
func TestCosignV3SignaturesVerified(t *testing.T) {
	t.Parallel()
	layout, digest := buildImage(t, "0.4.0-cosign3")
	push := append([]string{"push", "--oci-layout", layout, "--digest", digest, "--version", "0.4.0-cosign3", "--progress", "quiet"}, registryArgs("cosign3")...)
	if r := idopipe(t, nil, push...); r.code != 0 {
		t.Fatalf("push:\n%s", r)
	}
	pinned := stack.Registry.Host + "/cosign3/planner@" + digest
	c := testenv.GitHubClaims{Repository: "idopipe-e2e/other", Ref: "refs/heads/main", Workflow: ".github/workflows/ci.yml"}
	tokFile, tok := tokenFile(t, c)
	out, err := cosign3(t, nil, "sign", "--yes", "--identity-token", tokFile, "--signing-config", stack.Sigstore.SigningConfig,
		"--trusted-root", stack.Sigstore.TrustedRoot, "--registry-cacert", stack.Registry.CAFile, pinned)
	if err != nil {
		t.Fatalf("cosign v3 sign (keyless): %v\n%s", err, out)
	}
	base := []string{"verify-pull", pinned, "--registry-ca", stack.Registry.CAFile, "--trusted-root", stack.Sigstore.TrustedRoot, "--certificate-oidc-issuer", stack.Sigstore.IssuerURL}
	v := idopipe(t, nil, append(base, "--certificate-identity", c.SAN())...)
	noOIDCToken(t, v, tok)
	if v.code != 0 || !strings.Contains(v.stdout, "signed by "+c.SAN()) {
		t.Fatalf("idopipe verify-pull of cosign v3's keyless signature:\n%s", v)
	}
	if w := idopipe(t, nil, append(base, "--signer-repo", keylessRepo)...); w.code != int(fail.Unsigned) {
		t.Errorf("cosign v3's signature by %s passed a policy for %s:\n%s", c.SAN(), keylessRepo, w)
	}

	// An attestation alone, as actions/attest writes it (a DSSE bundle of
	// SLSA v1 provenance about the digest, stored as a referrer), is a
	// signature of the digest by that identity too.
	attested, adigest := buildImage(t, "0.4.0-attested")
	apush := append([]string{"push", "--oci-layout", attested, "--digest", adigest, "--version", "0.4.0-attested", "--progress", "quiet"}, registryArgs("cosign3")...)
	if r := idopipe(t, nil, apush...); r.code != 0 {
		t.Fatalf("push:\n%s", r)
	}
	apinned := stack.Registry.Host + "/cosign3/planner@" + adigest
	predicate := filepath.Join(t.TempDir(), "provenance.json")
	if err := os.WriteFile(predicate, []byte(`{"buildDefinition":{"buildType":"https://actions.github.io/buildtypes/workflow/v1","externalParameters":{"workflow":{"ref":"refs/heads/main","repository":"https://github.com/idopipe-e2e/other","path":".github/workflows/ci.yml"}}},"runDetails":{"builder":{"id":"https://github.com/actions/runner/github-hosted"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = cosign3(t, nil, "attest", "--yes", "--type", "slsaprovenance1", "--predicate", predicate, "--identity-token", tokFile,
		"--signing-config", stack.Sigstore.SigningConfig, "--trusted-root", stack.Sigstore.TrustedRoot, "--registry-cacert", stack.Registry.CAFile, apinned)
	if err != nil {
		t.Fatalf("cosign v3 attest: %v\n%s", err, out)
	}
	va := idopipe(t, nil, "verify-pull", apinned, "--registry-ca", stack.Registry.CAFile, "--trusted-root", stack.Sigstore.TrustedRoot,
		"--certificate-oidc-issuer", stack.Sigstore.IssuerURL, "--signer-repo", "idopipe-e2e/other")
	if va.code != 0 || !strings.Contains(va.stdout, "signed by "+c.SAN()) {
		t.Errorf("idopipe verify-pull of an attestation-only image (actions/attest's format):\n%s", va)
	}

	// A key pair, in cosign v3's bundle format.
	priv, pub := keyPair(t)
	out, err = cosign3(t, []string{"COSIGN_PASSWORD=" + keyPassword}, "sign", "--yes", "--key", priv,
		"--signing-config", stack.Sigstore.SigningConfigNoLog, "--trusted-root", stack.Sigstore.TrustedRoot, "--registry-cacert", stack.Registry.CAFile, pinned)
	if err != nil {
		t.Fatalf("cosign v3 sign --key: %v\n%s", err, out)
	}
	k := idopipe(t, nil, "verify-pull", pinned, "--registry-ca", stack.Registry.CAFile, "--verify-key", pub)
	if k.code != 0 || !strings.Contains(k.stdout, "signed by "+pub) {
		t.Errorf("idopipe verify-pull --verify-key of cosign v3's keyed bundle:\n%s", k)
	}
}

// cosign3 runs the pinned cosign v3 with the registry's credentials in a
// docker config of its own (never in argv).
func cosign3(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	return peer(t, filepath.Join(stack.Tools, "cosign3"), env, args...)
}

// ghAttestation runs the pinned gh's attestation command fully offline: gh
// wants some token to exist, and calls no GitHub API with --bundle-from-oci
// and --custom-trusted-root.
func ghAttestation(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return peer(t, filepath.Join(stack.Tools, "gh"), []string{"GH_TOKEN=unused-offline", "SSL_CERT_FILE=" + stack.Registry.CAFile, "GH_NO_UPDATE_NOTIFIER=1"}, append([]string{"attestation"}, args...)...)
}

// peer runs another tool with the registry's credentials in a docker
// config of its own.
func peer(t *testing.T, bin string, env []string, args ...string) (string, error) {
	t.Helper()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no %s: run make tools", bin)
	}
	dir := t.TempDir()
	writeDockerConfig(t, dir)
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "DOCKER_CONFIG=" + dir, "TUF_ROOT=" + filepath.Join(dir, "tuf")}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
