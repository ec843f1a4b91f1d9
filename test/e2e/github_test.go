package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idopipe/idopipe/pkg/fail"
)

// TestGitHubActions runs the binary as a GitHub Actions step would: with
// GITHUB_ACTIONS=true and GITHUB_OUTPUT / GITHUB_STEP_SUMMARY pointing at
// files.
func TestGitHubActions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	outFile, summaryFile := filepath.Join(dir, "output"), filepath.Join(dir, "summary")
	env := []string{"GITHUB_ACTIONS=true", "GITHUB_OUTPUT=" + outFile, "GITHUB_STEP_SUMMARY=" + summaryFile}
	r := idopipeRaw(t, env, releaseArgs("gha")...)
	if r.code != 0 {
		t.Fatalf("release:\n%s", r)
	}
	lines := strings.Split(r.stdout, "\n")
	if lines[0] != "::add-mask::"+stack.Registry.Password {
		t.Errorf("the first line is not the token's mask: %q", lines[0])
	}
	rest := strings.Join(lines[1:], "\n")
	assertNoToken(t, "stdout after the mask", rest)
	assertNoToken(t, "stderr", r.stderr)
	for _, stage := range []string{"validate", "build", "push", "verify-pull", "secret", "apply", "wait"} {
		if !strings.Contains(rest, "::group::"+stage+"\n") {
			t.Errorf("no group for stage %s", stage)
		}
	}
	if strings.Count(rest, "::group::") != strings.Count(rest, "::endgroup::") {
		t.Error("groups are not all closed")
	}
	out, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	o := string(out)
	if !strings.Contains(o, "image="+repoOf("gha")+":0.4.0\n") || !strings.Contains(o, "digest=sha256:") || !strings.Contains(o, "pods-ready=2/2\n") {
		t.Errorf("GITHUB_OUTPUT:\n%s", o)
	}
	sum, err := os.ReadFile(summaryFile)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(sum); !strings.Contains(s, "## idopipe release") || !strings.Contains(s, "| build |") || !strings.Contains(s, "2/2 Ready") {
		t.Errorf("job summary:\n%s", s)
	}
	assertNoToken(t, "GITHUB_OUTPUT", o)
	assertNoToken(t, "the job summary", string(sum))

	// A manifest error is annotated with its file and line.
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\n# second\napiVersion: v1\nmetadata: {name: nokind}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = idopipeRaw(t, env, releaseWith("gha-bad", bad)...)
	if r.code != int(fail.Manifest) || !strings.Contains(r.stdout, "::error title=idopipe validate,file="+bad+",line=5::") {
		t.Errorf("manifest error annotation:\n%s", r)
	}
}
