package e2e

import (
	"strings"
	"testing"

	"github.com/idopipe/idopipe/pkg/fail"
)

// TestStageSelection: --to stops early, --from resumes with what the
// registry holds, --skip leaves a stage out, and impossible selections are
// usage errors; a rerun does not push what the registry already has.
func TestStageSelection(t *testing.T) {
	t.Parallel()
	const ns = "stages-sel"
	r := idopipe(t, nil, releaseArgs(ns, "--to", "verify-pull")...)
	if r.code != 0 || strings.Contains(r.stdout, "==> secret") || !strings.Contains(r.stdout, "==> verify-pull") {
		t.Fatalf("--to verify-pull:\n%s", r)
	}
	r = idopipe(t, nil, releaseArgs(ns, "--from", "secret", "--skip", "wait")...)
	if r.code != 0 || strings.Contains(r.stdout, "==> build") || strings.Contains(r.stdout, "==> wait") ||
		!strings.Contains(r.stdout, "not built or pushed in this run: the registry has "+repoOf(ns)+":0.4.0@sha256:") {
		t.Fatalf("--from secret --skip wait:\n%s", r)
	}
	r = idopipe(t, nil, releaseArgs(ns)...)
	if r.code != 0 || !strings.Contains(r.stdout, "is already in the registry: not pushed again") {
		t.Fatalf("rerun:\n%s", r)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--from", "deploy"}, `unknown stage "deploy"`},
		{[]string{"--skip", "secret"}, "apply needs the secret stage"},
		{[]string{"--skip", "build"}, "push needs the build stage"},
		{[]string{"--from", "wait", "--to", "build"}, "--from wait is after --to build"},
		{[]string{"--skip", "validate"}, "validate always runs"},
	} {
		r := idopipe(t, nil, releaseArgs(ns, tc.args...)...)
		if r.code != int(fail.Usage) || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: want exit 2 and %q:\n%s", tc.args, tc.want, r)
		}
	}
}

// TestQuietVersionCompletion: --quiet prints the summary line only;
// version names the build; completion scripts come out for each shell.
func TestQuietVersionCompletion(t *testing.T) {
	t.Parallel()
	r := idopipe(t, nil, releaseArgs("quiet", "-q")...)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 1 || !strings.HasPrefix(lines[0], "released ") || strings.TrimSpace(r.stderr) != "" {
		t.Fatalf("release -q:\n%s", r)
	}
	if v := idopipe(t, nil, "version"); v.code != 0 || !strings.HasPrefix(v.stdout, "idopipe ") || !strings.Contains(v.stdout, "go1.") {
		t.Errorf("version:\n%s", v)
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if c := idopipe(t, nil, "completion", sh); c.code != 0 || !strings.Contains(c.stdout, "idopipe") {
			t.Errorf("completion %s: exit %d", sh, c.code)
		}
	}
	if h := idopipe(t, nil, "help", "exit-codes"); h.code != 0 || !strings.Contains(h.stdout, "13  buildkit-unreachable") {
		t.Errorf("help exit-codes:\n%s", h)
	}
	if r := idopipe(t, nil, "version", "-q", "-v"); r.code != 2 {
		t.Errorf("-q with -v: exit %d", r.code)
	}
}
