package sign_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/idopipe/idopipe/pkg/sign"
)

// TestKeylessInteropTools: what the keyless signer stores, cosign v3
// verify, cosign v3 verify-attestation and gh attestation verify
// --bundle-from-oci accept, against the fake instance's trusted root, on
// the in-memory registry without the referrers API (the tag fallback, as
// on GHCR). It needs the pinned cosign3 and gh from the tools directory
// ($IDOPIPE_TOOLS_BIN) and skips without them; no stack is started.
func TestKeylessInteropTools(t *testing.T) {
	t.Parallel()
	dir := os.Getenv("IDOPIPE_TOOLS_BIN")
	cosign3, gh := filepath.Join(dir, "cosign3"), filepath.Join(dir, "gh")
	for _, p := range []string{cosign3, gh} {
		if _, err := os.Stat(p); dir == "" || err != nil {
			t.Skipf("%s is not built (set IDOPIPE_TOOLS_BIN to the tools directory)", filepath.Base(p))
		}
	}
	ctx := context.Background()
	reg := newMemRegistry(t, false)
	f := newFakeSigstore(t)
	ref, _ := pushIndexTo(t, reg, "o/planner:0.4.0")
	s := f.signer(t, sign.TokenValue("T", f.token(githubClaims("o/r", "release.yml", "refs/tags/v1"))))
	if _, err := s.Sign(ctx, ref); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	run := func(bin string, args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TUF_ROOT=" + filepath.Join(home, "tuf"),
			"SIGSTORE_NO_CACHE=true", "GH_TOKEN=unused", "GH_NO_UPDATE_NOTIFIER=1"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s %v: %v\n%s", filepath.Base(bin), args, err, out)
		}
	}
	keyless := []string{"--trusted-root", f.trustedRoot, "--certificate-identity", releaseSAN, "--certificate-oidc-issuer", githubIssuer,
		"--use-signed-timestamps", "--insecure-ignore-tlog", "--insecure-ignore-sct", "--allow-http-registry"}
	run(cosign3, append(append([]string{"verify"}, keyless...), ref.String())...)
	run(cosign3, append(append([]string{"verify-attestation", "--type", "slsaprovenance1"}, keyless...), ref.String())...)
	run(gh, "attestation", "verify", "oci://"+ref.String(), "--owner", "o", "--bundle-from-oci", "--custom-trusted-root", f.trustedRoot)
	run(gh, "attestation", "verify", "oci://"+ref.String(), "--repo", "o/r", "--signer-workflow", "o/r/.github/workflows/release.yml",
		"--bundle-from-oci", "--custom-trusted-root", f.trustedRoot)
}
