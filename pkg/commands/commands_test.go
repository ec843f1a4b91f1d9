package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/pipeline"
)

// run executes idopipe in-process with env (KEY=VALUE pairs only: nothing
// of the process's environment) and captures the injected streams.
func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if env == nil {
		env = map[string]string{}
	}
	e := Env{Getenv: func(k string) string { return env[k] }, Stdout: &out, Stderr: &errb}
	code := Execute(context.Background(), e, args)
	return code, out.String(), errb.String()
}

// TestStreams: output goes to Env.Stdout and errors to Env.Stderr, never
// to the process's own.
func TestStreams(t *testing.T) {
	code, out, errs := run(t, nil, "version")
	if code != 0 || !strings.Contains(out, "idopipe") || errs != "" {
		t.Fatalf("version: %d %q %q", code, out, errs)
	}
	code, out, _ = run(t, nil, "version", "-o", "json")
	var res struct {
		Kind string `json:"kind"`
		OK   bool   `json:"ok"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Kind != "result" || !res.OK {
		t.Fatalf("version -o json: %d %q", code, out)
	}
	code, out, errs = run(t, nil, "no-such-command")
	if code != int(fail.Usage) || out != "" || !strings.HasPrefix(errs, "error: ") {
		t.Fatalf("unknown command: %d %q %q", code, out, errs)
	}
	code, out, _ = run(t, nil, "exit-codes")
	if code != 0 || !strings.Contains(out, "credentials") || !strings.Contains(out, "idopipe diff") {
		t.Fatalf("exit-codes: %d %q", code, out)
	}
}

// TestDeployRegistryCA: deploy and diff read --registry-ca before anything
// else, so a path that does not exist is a usage error although a deploy
// by digest might never reach the registry; --jobs below 1 likewise.
func TestDeployRegistryCA(t *testing.T) {
	ref := "ghcr.io/o/planner:1@sha256:" + strings.Repeat("a", 64)
	for _, cmd := range []string{"deploy", "diff"} {
		code, out, errs := run(t, nil, cmd, "--image", ref, "--registry-ca", "/nonexistent/ca.pem")
		if code != int(fail.Usage) || !strings.Contains(errs, "cannot read registry CA /nonexistent/ca.pem") || !strings.Contains(errs, "--registry-ca") {
			t.Errorf("%s --registry-ca /nonexistent: exit %d\n%s%s", cmd, code, out, errs)
		}
		code, _, errs = run(t, nil, cmd, "--image", ref, "--jobs", "0")
		if code != int(fail.Usage) || !strings.Contains(errs, "--jobs 0") {
			t.Errorf("%s --jobs 0: exit %d %s", cmd, code, errs)
		}
		code, out, _ = run(t, nil, cmd, "--image", ref, "--registry-ca", "/nonexistent/ca.pem", "-o", "json")
		if code != int(fail.Usage) || !strings.Contains(out, `"exitCode":2`) {
			t.Errorf("%s -o json: exit %d %s", cmd, code, out)
		}
	}
}

// TestDeployUsesRegistryOptions: what deploy's registry flags say reaches
// the access its publisher and verifier use (the tag's digest, the
// signature check).
func TestDeployUsesRegistryOptions(t *testing.T) {
	o := &deployOptions{g: &options.GlobalOptions{}, kube: options.NewKubeOptions()}
	c := &cobra.Command{Use: "deploy"}
	o.addFlags(c, options.ClusterFlags{DryRun: true, Writes: true})
	if err := c.ParseFlags([]string{"--registry-ca", "ca.pem", "--jobs", "3", "--image", "r.io/o/p:1", "-n", "x", "--verify-key", "k.pub"}); err != nil {
		t.Fatal(err)
	}
	if a := o.registry.Access(nil); a.CAFile != "ca.pem" || a.Jobs != 3 {
		t.Errorf("access %+v", a)
	}
	po := o.pipelineOptions()
	if po.Image != "r.io/o/p:1" || po.Deploy.Namespace != "x" || po.Images[0].Name != "planner" {
		t.Errorf("pipeline options %+v", po)
	}
	d := wiring{kube: o.kube, registry: &o.registry}.deps()
	if d.Publisher == nil || d.Verifier == nil || d.Connect == nil || d.Builder != nil || d.Signer != nil {
		t.Errorf("deploy's deps %+v", d)
	}
}

// TestRemovedFlags: flags a command would ignore are not there: the
// usage error names them.
func TestRemovedFlags(t *testing.T) {
	ref := "ghcr.io/o/planner:1@sha256:" + strings.Repeat("a", 64)
	for _, args := range [][]string{
		{"deploy", "--image", ref, "--version", "1"},
		{"diff", "--image", ref, "--dry-run=false"},
		{"diff", "--image", ref, "--timeout", "1m"},
		{"diff", "--image", ref, "--no-recreate"},
		{"diff", "--image", ref, "--lock-timeout", "1m"},
		{"preflight", "--jobs", "2"},
	} {
		code, _, errs := run(t, nil, args...)
		if code != int(fail.Usage) || !strings.Contains(errs, "unknown flag") {
			t.Errorf("%v: exit %d %s", args, code, errs)
		}
	}
}

// TestEveryCommandValidates: a bad value is a usage error before any
// work, per command.
func TestEveryCommandValidates(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"release", "--from", "nope"}, `--from: unknown stage "nope"`},
		{[]string{"release", "--registry-ca", "/nonexistent"}, "cannot read registry CA"},
		{[]string{"release", "--buildkit-tls-ca", "x.pem"}, "--buildkit-tls-* apply to a tcp:// buildkitd"},
		{[]string{"release", "--progress", "fancy"}, `unknown progress mode "fancy"`},
		{[]string{"release", "--mount-from", "other.io/o/b"}, "not ghcr.io"},
		{[]string{"release", "--timeout", "-1s"}, "--timeout -1s is negative"},
		{[]string{"build", "--provenance", "all"}, `unknown provenance mode "all"`},
		{[]string{"push", "--key-password-file", "pw"}, "--key-password-file without --key"},
		{[]string{"preflight", "--version", "1/2"}, "is not a valid image tag"},
		{[]string{"verify-pull", "r.io/o/p:1", "--registry-ca", "/nonexistent"}, "cannot read registry CA"},
		{[]string{"verify-pull", "r.io/o/p:1", "--digest", "sha256:xyz"}, `invalid --digest "sha256:xyz"`},
		{[]string{"doctor", "--registry-ca", "/nonexistent"}, "cannot read registry CA"},
		{[]string{"teardown", "--delete-timeout", "-1s"}, "--delete-timeout -1s is negative"},
		{[]string{"-q", "-v", "version"}, "--quiet and --verbose contradict"},
	} {
		code, _, errs := run(t, nil, tc.args...)
		if code != int(fail.Usage) || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, want 2 saying %q:\n%s", tc.args, code, tc.want, errs)
		}
	}
}

// TestDiffStatus: 0 nothing to change, 1 differences, above 1 an error;
// an internal error is 70, as everywhere.
func TestDiffStatus(t *testing.T) {
	for _, tc := range []struct {
		changes int
		err     error
		code    int
	}{
		{0, nil, DiffNoChanges},
		{3, nil, DiffChanges},
		{0, fail.New(fail.Cluster, "", "x"), int(fail.Cluster)},
		{2, fail.New(fail.Manifest, "", "x"), int(fail.Manifest)},
		{0, fail.New(fail.Usage, "", "x"), int(fail.Usage)},
		{0, fail.New(fail.Internal, "", "x"), 70},
		{0, context.Canceled, int(fail.Interrupted)},
	} {
		err := diffStatus(tc.changes, tc.err)
		code := 0
		if err != nil {
			code = exitCode(err)
		}
		if code != tc.code {
			t.Errorf("changes %d, err %v: exit %d, want %d", tc.changes, tc.err, code, tc.code)
		}
		if tc.err != nil && !strings.Contains(err.Error(), tc.err.Error()) {
			t.Errorf("the error's message is lost: %v", err)
		}
	}
	if !isStatus(diffStatus(1, nil)) || isStatus(diffStatus(0, fail.New(fail.Cluster, "", "x"))) {
		t.Error("differences must be a status, an error not")
	}
	// Every error's exit code differs from the differences code.
	for _, c := range fail.Classes() {
		if code := exitCode(diffStatus(0, fail.New(c, "", "x"))); code == DiffChanges || code == DiffNoChanges {
			t.Errorf("class %s exits %d from diff", c, code)
		}
	}
}

// TestDiffResult: differences print the summary (not an error line) and
// exit 1; -o json says ok with the count.
func TestDiffResult(t *testing.T) {
	g := &options.GlobalOptions{Output: "human"}
	var out, errb bytes.Buffer
	env := Env{Getenv: func(string) string { return "" }, Stdout: &out, Stderr: &errb}
	err := finish(env, g, nil, diffSummary(pipeline.Result{Changes: 2}), nil, diffStatus(2, nil))
	if exitCode(err) != 1 || !strings.Contains(out.String(), "2 difference(s)") {
		t.Fatalf("human: %v %q", err, out.String())
	}
	out.Reset()
	g.Output = "json"
	err = finish(env, g, nil, "", pipeline.Result{Changes: 2}, diffStatus(2, nil))
	var res struct {
		OK     bool            `json:"ok"`
		Result pipeline.Result `json:"result"`
		Error  string          `json:"error"`
	}
	if exitCode(err) != 1 || json.Unmarshal(out.Bytes(), &res) != nil || !res.OK || res.Result.Changes != 2 || res.Error != "" {
		t.Fatalf("json: %v %q", err, out.String())
	}
}

// TestReleaseHelpListsStages: release's help is the pipeline's table.
func TestReleaseHelpListsStages(t *testing.T) {
	code, out, _ := run(t, nil, "release", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(out, pipeline.StagesHelp()) {
		t.Errorf("release --help lacks pipeline.StagesHelp():\n%s", out)
	}
	for _, s := range pipeline.StageOrder() {
		if !strings.Contains(out, "  "+s+" ") {
			t.Errorf("release --help does not list stage %s", s)
		}
	}
	if !strings.Contains(out, strings.Join(pipeline.StageNames, ", ")) {
		t.Errorf("release --help does not name the selectable stages %v", pipeline.StageNames)
	}
	_, out, _ = run(t, nil, "diff", "--help")
	if !strings.Contains(out, "1  differences") || !strings.Contains(out, "0  nothing would change") {
		t.Errorf("diff --help does not document its exit status:\n%s", out)
	}
}

// TestGitHubSummaryOrder: the job summary lists the stages that ran in
// the pipeline's order, checks and resolve included.
func TestGitHubSummaryOrder(t *testing.T) {
	dir := t.TempDir()
	g := &options.GlobalOptions{}
	g.Complete(func(k string) string {
		return map[string]string{"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": filepath.Join(dir, "out"), "GITHUB_STEP_SUMMARY": filepath.Join(dir, "sum")}[k]
	})
	times := map[string]float64{}
	for _, s := range pipeline.StageOrder() {
		times[s] = 1
	}
	if err := writeGitHubResult(g, pipeline.Result{Stages: times, Ref: "r"}, "ns", nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "sum"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Split(l, "|"); len(f) == 4 && strings.TrimSpace(f[1]) != "stage" && !strings.HasPrefix(f[1], "-") {
			got = append(got, strings.TrimSpace(f[1]))
		}
	}
	if !slices.Equal(got, pipeline.StageOrder()) || !slices.Contains(got, "checks") || !slices.Contains(got, "resolve") {
		t.Errorf("summary stages %v, want %v", got, pipeline.StageOrder())
	}
	if o, _ := os.ReadFile(filepath.Join(dir, "out")); !strings.Contains(string(o), "ref=r") {
		t.Errorf("outputs %q", o)
	}
}

// TestPrecedence: flags override $IDOPIPE_*, which override the config file.
func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "idopipe.yaml")
	if err := os.WriteFile(cfg, []byte("namespace: from-file\nowner: file-owner\nsecret-name: file-secret\ntimeout: 7m\njobs: 9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	environ := map[string]string{"IDOPIPE_NAMESPACE": "from-env", "IDOPIPE_OWNER": "env-owner"}
	env := Env{Getenv: func(k string) string { return environ[k] }, Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}
	value := func(args ...string) func(string) string {
		root := NewRoot(env)
		cmd, rest, err := root.Find(append([]string{"release"}, args...))
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Fatal(err)
		}
		if err := applySettings(cmd, env, cfg, true); err != nil {
			t.Fatal(err)
		}
		return func(f string) string { return cmd.Flags().Lookup(f).Value.String() }
	}
	v := value("--owner", "flag-owner")
	for f, want := range map[string]string{"owner": "flag-owner", "namespace": "from-env", "secret-name": "file-secret", "timeout": "7m0s", "jobs": "9", "registry": "ghcr.io"} {
		if got := v(f); got != want {
			t.Errorf("--%s = %q, want %q", f, got, want)
		}
	}
	// deploy has no --owner: the file's owner is another command's setting.
	root := NewRoot(env)
	cmd, rest, _ := root.Find([]string{"deploy", "-n", "flag-ns"})
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatal(err)
	}
	if err := applySettings(cmd, env, cfg, true); err != nil {
		t.Fatal(err)
	}
	if ns := cmd.Flags().Lookup("namespace").Value.String(); ns != "flag-ns" {
		t.Errorf("deploy -n = %q", ns)
	}
	// A key no command knows is refused with its line.
	if err := os.WriteFile(cfg, []byte("namespace: x\nno-such-key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := run(t, nil, "version", "--config", cfg)
	if code != int(fail.Usage) || !strings.Contains(errs, "unknown key \"no-such-key\"") {
		t.Errorf("unknown key: %d %s", code, errs)
	}
}
