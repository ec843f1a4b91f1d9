package build_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/commands"
	"github.com/idopipe/idopipe/pkg/fail"
)

// cli runs idopipe's command line in-process with env as the whole
// environment (plus the stack's BuildKit and registry credentials).
type cliResult struct {
	code           int
	stdout, stderr string
}

func cli(t *testing.T, env map[string]string, args ...string) cliResult {
	t.Helper()
	full := map[string]string{
		"BUILDKIT_HOST": stack.BuildKit.Address,
		"GITHUB_ACTOR":  stack.Registry.Username,
		"GITHUB_TOKEN":  stack.Registry.Password,
	}
	for k, v := range env {
		full[k] = v
	}
	var out, errb bytes.Buffer
	code := commands.Execute(context.Background(), commands.Env{
		Getenv: func(k string) string { return full[k] }, Stdout: &out, Stderr: &errb,
	}, args)
	r := cliResult{code: code, stdout: out.String(), stderr: errb.String()}
	if strings.Contains(r.stdout+r.stderr, stack.Registry.Password) {
		t.Errorf("the registry token leaked into the output")
	}
	return r
}

// buildResult is the last line of `idopipe build -o json`.
func buildResult(t *testing.T, r cliResult) build.Result {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var out struct {
		OK     bool         `json:"ok"`
		Result build.Result `json:"result"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &out); err != nil || !out.OK {
		t.Fatalf("build result %q: %v\nstderr:\n%s", lines[len(lines)-1], err, r.stderr)
	}
	return out.Result
}

// TestCLIMultiPlatformProvenance: `idopipe build --platform … --provenance
// min` makes one index; push sends it whole and verify-pull reports the two
// platforms, not the attestations (no unknown/unknown).
func TestCLIMultiPlatformProvenance(t *testing.T) {
	testenv.NeedStack(t)
	dir := writeFiles(t, map[string]string{
		"Dockerfile": perArchDockerfile, "hello-amd64": "amd64\n", "hello-arm64": "arm64\n",
	})
	layout := filepath.Join(t.TempDir(), "oci")
	r := cli(t, nil, "build", "--source", dir, "--oci-layout", layout, "--version", "2.0.0",
		"--platform", "linux/amd64,linux/arm64", "--provenance", "min", "--label", "team=ido",
		"--source-date-epoch", "1700000000", "--progress", "plain", "-o", "json")
	if r.code != 0 {
		t.Fatalf("build: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	res := buildResult(t, r)
	if got := res.Platforms(); !reflect.DeepEqual(got, []string{"linux/amd64", "linux/arm64"}) || len(res.Attestations) != 2 {
		t.Fatalf("result %+v", res)
	}
	if !strings.Contains(r.stderr, "COPY hello-arm64 /hello") {
		t.Errorf("BuildKit's plain progress is not on stderr:\n%s", r.stderr)
	}

	p := cli(t, nil, "push", "--oci-layout", layout, "--version", "2.0.0",
		"--registry", stack.Registry.Host, "--registry-ca", stack.Registry.CAFile, "--owner", "cli-test")
	if p.code != 0 || !strings.Contains(p.stdout, res.Digest) {
		t.Fatalf("push: exit %d\n%s\n%s", p.code, p.stdout, p.stderr)
	}
	ref := stack.Registry.Host + "/cli-test/planner:2.0.0"
	v := cli(t, nil, "verify-pull", ref, "--digest", res.Digest, "--registry-ca", stack.Registry.CAFile)
	if v.code != 0 || !strings.Contains(v.stdout, "linux/amd64") || !strings.Contains(v.stdout, "linux/arm64") || strings.Contains(v.stdout, "unknown") {
		t.Fatalf("verify-pull should list linux/amd64 and linux/arm64 only: exit %d\n%s\n%s", v.code, v.stdout, v.stderr)
	}
}

// TestCLIRegistryCache: --cache-to/--cache-from of a registry cache take
// the registry token from the environment, as push does.
func TestCLIRegistryCache(t *testing.T) {
	testenv.NeedStack(t)
	dir := writeFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo cached > /x\n"})
	cache := "type=registry,ref=" + stack.Registry.Host + "/cli-test/cache:buildcache"
	args := []string{"build", "--source", dir, "--build-context", "busybox=oci-layout://" + busybox,
		"--oci-layout", filepath.Join(t.TempDir(), "oci"), "--progress", "plain"}
	if r := cli(t, nil, append(args, "--cache-to", cache+",mode=max")...); r.code != 0 {
		t.Fatalf("build with --cache-to: exit %d\n%s", r.code, r.stderr)
	}
	fresh := freshBuildKit(t)
	r := cli(t, map[string]string{"BUILDKIT_HOST": fresh.Address}, append(args, "--cache-from", cache)...)
	if r.code != 0 || !stepLine(r.stderr, "RUN echo cached", fromCache) {
		t.Fatalf("build with --cache-from on a fresh buildkitd: exit %d\n%s", r.code, r.stderr)
	}
	// The step is CACHED, or its layer downloaded from the cache, which
	// BuildKit does not flag as cached.
	if !regexp.MustCompile(`\(linux/amd64; [01]/1 steps cached\)`).MatchString(r.stdout) {
		t.Errorf("summary %q", r.stdout)
	}
	r = cli(t, map[string]string{"GITHUB_TOKEN": "ghp_wrong"}, append(args, "--no-cache", "--cache-to", cache)...)
	// GHCR's token endpoint refuses a wrong PAT with 403 DENIED, which
	// BuildKit reports as "failed to fetch oauth token: denied: denied".
	if r.code != int(fail.Credentials) || !strings.Contains(r.stderr, "denied") || !strings.Contains(r.stderr, "at its token endpoint") {
		t.Fatalf("a wrong token: exit %d, want %d\n%s", r.code, fail.Credentials, r.stderr)
	}
}

// TestCLIBadInput: each bad build input gives one line on stderr and its
// class's exit code.
func TestCLIBadInput(t *testing.T) {
	testenv.NeedStack(t)
	ok := writeFiles(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY f /f\n", "f": "x"})
	syntax := writeFiles(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY f\n", "f": "x"})
	base := func(dir string, extra ...string) []string {
		return append([]string{"build", "--source", dir, "--oci-layout", filepath.Join(t.TempDir(), "oci"), "--progress", "quiet"}, extra...)
	}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		args  []string
		class fail.Class
		want  string
	}{
		{"unknown platform", nil, base(ok, "--platform", "linux/amd65"), fail.Usage, `unknown platform "linux/amd65"`},
		{"unreachable daemon", map[string]string{"BUILDKIT_HOST": "unix:///nonexistent/buildkitd.sock"}, base(ok), fail.Daemon, "cannot reach BuildKit at unix:///nonexistent/buildkitd.sock"},
		{"syntax error", nil, base(syntax), fail.Build, filepath.Join(syntax, "Dockerfile") + ":2"},
		{"missing context", nil, base(filepath.Join(ok, "nope")), fail.Build, "is not a directory"},
		{"bad progress", nil, append(base(ok), "--progress", "fancy"), fail.Usage, `unknown progress mode "fancy"`},
		{"missing secret file", nil, base(ok, "--secret", "id=x,src=/nonexistent"), fail.Usage, "secret \"x\": file /nonexistent does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, tc.env, tc.args...)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			last := lines[len(lines)-1]
			if r.code != int(tc.class) || !strings.HasPrefix(last, "error: ") || !strings.Contains(last, tc.want) {
				t.Fatalf("exit %d (want %d), last stderr line %q, want %q", r.code, tc.class, last, tc.want)
			}
		})
	}
}
