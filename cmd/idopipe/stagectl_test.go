package main

import (
	"strings"
	"testing"

	"github.com/idopipe/idopipe/pkg/fail"
)

// TestStageSelection: --to stops early, --from resumes with what the
// registry holds, --skip leaves a stage out, and impossible selections are
// usage errors; a rerun does not push what the registry already has.
func TestStageSelection(t *testing.T) {
	const ns = "stages-sel"
	r := idopipe(t, nil, releaseArgs(ns, "--to", "verify-pull")...)
	if r.code != 0 || strings.Contains(r.stdout, "==> secret") || !strings.Contains(r.stdout, "==> verify-pull") {
		t.Fatalf("--to verify-pull:\n%s", r)
	}
	r = idopipe(t, nil, releaseArgs(ns, "--from", "secret", "--skip", "wait")...)
	if r.code != 0 || strings.Contains(r.stdout, "==> build") || strings.Contains(r.stdout, "==> wait") ||
		!strings.Contains(r.stdout, "not built or pushed in this run: the registry has "+stack.Registry.Host+"/ido-test/planner:0.4.0@sha256:") {
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
