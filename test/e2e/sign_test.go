package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/fail"
)

const keyPassword = "e2e key password"

// keyPair runs `idopipe keys generate` into a new directory (the password
// from $COSIGN_PASSWORD) and returns cosign.key and cosign.pub.
func keyPair(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	r := idopipe(t, []string{"COSIGN_PASSWORD=" + keyPassword}, "keys", "generate", "--output-dir", dir)
	if r.code != 0 {
		t.Fatalf("keys generate:\n%s", r)
	}
	return filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
}

// gitSource serves the planner fixture as a git repository over HTTP and
// returns its URL (#main): a git context, whose URL and commit BuildKit
// records in the provenance.
func gitSource(t *testing.T) (url, commit string) {
	t.Helper()
	work := t.TempDir()
	if out, err := exec.Command("cp", "-a", source+"/.", work).CombinedOutput(); err != nil {
		t.Fatalf("copy the fixture: %v\n%s", err, out)
	}
	git := func(dir string, args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git(work, "init", "-q", "-b", "main")
	git(work, "add", ".")
	git(work, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "fixture")
	commit = git(work, "rev-parse", "HEAD")
	root := t.TempDir()
	git(root, "clone", "-q", "--bare", work, filepath.Join(root, "ido.git"))
	srv, err := testenv.StartGitServer(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv.URL + "/ido.git", commit
}

func noPassword(t *testing.T, r result) {
	t.Helper()
	if strings.Contains(r.stdout+r.stderr, keyPassword) {
		t.Errorf("the key password is in the output:\n%s", r)
	}
}

// TestSignedRelease: a release with --provenance, --sign and --verify-key
// signs what it pushes and checks the signature before the cluster stages;
// verify-pull --verify-key shows the signed provenance and checks --source-repo;
// cosign verifies what the release signed.
func TestSignedRelease(t *testing.T) {
	t.Parallel()
	priv, pub := keyPair(t)
	if r := idopipe(t, []string{"COSIGN_PASSWORD="}, "keys", "generate", "--output-dir", t.TempDir()); r.code != 2 || !strings.Contains(r.stderr, "COSIGN_PASSWORD") {
		t.Errorf("keys generate without a password:\n%s", r)
	}
	env := []string{"COSIGN_PASSWORD=" + keyPassword}
	repo, commit := gitSource(t)
	args := releaseArgs("signed", "--version", "0.4.0-signed", "--provenance", "min",
		"--sign", "--key", priv, "--verify-key", pub)
	args = withArg(args, "--source", repo+"#main")
	r := idopipe(t, env, args...)
	noPassword(t, r)
	if r.code != 0 {
		t.Fatalf("signed release:\n%s", r)
	}
	if !strings.Contains(r.stdout, "signed 2 manifest(s) with "+priv) || !strings.Contains(r.stdout, "1 provenance attestation(s)") {
		t.Errorf("the push line does not say what was signed:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "verified with "+pub) {
		t.Errorf("the release does not say the signature was verified:\n%s", r.stdout)
	}
	tag := repoOf("signed") + ":0.4.0-signed"

	v := idopipe(t, nil, "verify-pull", tag, "--registry-ca", stack.Registry.CAFile, "--verify-key", pub, "--source-repo", repo)
	if v.code != 0 || !strings.Contains(v.stdout, "signed by "+pub) ||
		!strings.Contains(v.stdout, "signed provenance: source "+repo+"#main@"+commit) ||
		!strings.Contains(v.stdout, "builder ") {
		t.Fatalf("verify-pull --verify-key --source-repo:\n%s", v)
	}
	wrong := idopipe(t, nil, "verify-pull", tag, "--registry-ca", stack.Registry.CAFile, "--verify-key", pub, "--source-repo", "https://github.com/someone/fork")
	if wrong.code != int(fail.Unsigned) || !strings.Contains(wrong.stderr, "someone/fork") {
		t.Errorf("verify-pull with another --source-repo:\n%s", wrong)
	}
	unsignedView := idopipe(t, nil, "verify-pull", tag, "--registry-ca", stack.Registry.CAFile)
	if unsignedView.code != 0 || !strings.Contains(unsignedView.stdout, "unsigned provenance: source "+repo) {
		t.Errorf("verify-pull without --verify-key shows no provenance:\n%s", unsignedView)
	}

	out, err := cosignCmd(t, nil, "verify", "--key", pub, "--insecure-ignore-tlog=true", "--offline=true",
		"--trusted-root", emptyTrustedRoot(t), "--registry-cacert", stack.Registry.CAFile, tag)
	if err != nil {
		t.Fatalf("cosign verify of the released image: %v\n%s", err, out)
	}
}

// TestDeployRefusesUnsigned: deploy --verify-key refuses an image that is
// not signed, or signed by another key, before it writes anything to the
// cluster (not even the namespace), with exit code 15 (unsigned) and one line naming
// the image, the digest and the keys tried; --verify-key from the config
// file does the same. Once signed, the same deploy goes through and pins
// the digest it verified.
func TestDeployRefusesUnsigned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	priv, pub := keyPair(t)
	_, otherPub := keyPair(t)
	layout, digest := buildImage(t, "0.4.0-gate")
	push := append([]string{"push", "--oci-layout", layout, "--digest", digest, "--version", "0.4.0-gate", "--progress", "quiet"}, registryArgs("gate")...)
	if r := idopipe(t, nil, push...); r.code != 0 {
		t.Fatalf("push:\n%s", r)
	}
	tag := stack.Registry.Host + "/gate/planner:0.4.0-gate"
	const ns = "gate"
	deploy := func(extra ...string) result {
		args := []string{"deploy", "--image", tag + "@" + digest, "--registry-ca", stack.Registry.CAFile,
			"--manifest", manifestFor(ns), "--crds", filepath.Join(fixtures, "intents_crds_v1alpha1.yaml"),
			"-n", ns, "--timeout", "60s"}
		return idopipe(t, nil, append(args, extra...)...)
	}
	refused := func(what string, r result, keys ...string) {
		t.Helper()
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != int(fail.Unsigned) || len(lines) != 1 || !strings.Contains(lines[0], stack.Registry.Host+"/gate/planner") || !strings.Contains(lines[0], digest) {
			t.Fatalf("%s: want exit 15 and one line naming image and digest:\n%s", what, r)
		}
		for _, k := range keys {
			if !strings.Contains(lines[0], k) {
				t.Errorf("%s: the error does not name key %s: %s", what, k, lines[0])
			}
		}
		if _, err := stack.Cluster.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil {
			t.Fatalf("%s: namespace %s was created before the refusal", what, ns)
		}
	}
	refused("unsigned", deploy("--verify-key", pub), pub)

	// Signed by another key: both keys tried are named.
	if r := idopipe(t, []string{"COSIGN_PASSWORD=" + keyPassword}, append(push, "--key", priv)...); r.code != 0 {
		t.Fatalf("push --key:\n%s", r)
	}
	refused("another key", deploy("--verify-key", otherPub), otherPub)

	// From the config file, by tag only: resolved, then refused.
	cfg := filepath.Join(t.TempDir(), "idopipe.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("verify-key:\n  - %s\n", otherPub)), 0o600); err != nil {
		t.Fatal(err)
	}
	byTag := idopipe(t, nil, "deploy", "--config", cfg, "--image", tag, "--registry-ca", stack.Registry.CAFile,
		"--manifest", manifestFor(ns), "--crds", filepath.Join(fixtures, "intents_crds_v1alpha1.yaml"), "-n", ns)
	refused("config file", byTag, otherPub)

	// Either key will do; the deploy pins the verified digest.
	ok := deploy("--verify-key", otherPub, "--verify-key", pub)
	if ok.code != 0 || !strings.Contains(ok.stdout, "verified with "+pub) || !strings.Contains(ok.stdout, "@"+digest) {
		t.Fatalf("deploy of the signed image:\n%s", ok)
	}
	t.Cleanup(func() {
		_ = stack.Cluster.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
}

// TestSignatureStoreFails: a registry that refuses the signature while
// the release pushes fails the release (exit 6) with the image not
// reported as signed; a rerun does not push the image again and completes
// the signature, which --verify-key then accepts.
func TestSignatureStoreFails(t *testing.T) {
	t.Parallel()
	priv, pub := keyPair(t)
	var failing atomic.Bool
	failing.Store(true)
	proxy := startProxy(t, func(r *http.Request) (int, string, bool) {
		if failing.Load() && r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/sha256-") {
			return http.StatusBadRequest, `{"errors":[{"code":"MANIFEST_INVALID","message":"injected"}]}`, true
		}
		return 0, "", false
	})
	env := []string{"COSIGN_PASSWORD=" + keyPassword}
	args := releaseArgs("sigfail", "--version", "0.4.0-sigfail", "--sign", "--key", priv, "--to", "verify-pull", "-o", "json")
	args = withArg(withArg(args, "--registry", proxy.Host), "--registry-ca", proxy.CAFile)
	r := idopipe(t, env, args...)
	noPassword(t, r)
	if r.code != 6 || !strings.Contains(r.stdout, "the image is pushed but not signed") || strings.Contains(r.stdout, `"signed":[`) {
		t.Fatalf("release with the signature refused: want exit 6, not signed:\n%s", r)
	}
	manifestPuts := proxy.Count(http.MethodPut, "/v2/ido-test-sigfail/planner/manifests/0.4.0-sigfail")
	if manifestPuts == 0 {
		t.Fatal("the image was never pushed through the proxy")
	}

	failing.Store(false)
	again := idopipe(t, env, append(args, "--verify-key", pub)...)
	if again.code != 0 || !strings.Contains(again.stdout, "not pushed again") || !strings.Contains(again.stdout, "verified with "+pub) {
		t.Fatalf("rerun:\n%s", again)
	}
	if n := proxy.Count(http.MethodPut, "/v2/ido-test-sigfail/planner/manifests/0.4.0-sigfail"); n != manifestPuts {
		t.Errorf("the rerun pushed the image manifest again (%d PUTs, was %d)", n, manifestPuts)
	}
}

// cosignCmd runs the pinned cosign with the registry's credentials in a
// docker config of its own (never in argv).
func cosignCmd(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	bin := os.Getenv("IDOPIPE_COSIGN")
	if bin == "" {
		bin = filepath.Join(stack.Tools, "cosign")
	}
	return peer(t, bin, env, args...)
}

// writeDockerConfig writes the registry's credentials as dir/config.json.
func writeDockerConfig(t *testing.T, dir string) {
	t.Helper()
	auth := base64.StdEncoding.EncodeToString([]byte(stack.Registry.Username + ":" + stack.Registry.Password))
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, stack.Registry.Host, auth)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// emptyTrustedRoot keeps cosign verify from fetching Sigstore's root: a
// key is all that is trusted here.
func emptyTrustedRoot(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(p, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
