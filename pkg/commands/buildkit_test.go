package commands

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idopipe/idopipe/pkg/fail"
)

// TestDeployBuildKitIsCreateOutput: deploy/buildkit/buildkitd.yaml is what
// `idopipe buildkit create --kubernetes -n buildkit --dry-run -o yaml`
// prints; regenerate it with that command when this fails.
func TestDeployBuildKitIsCreateOutput(t *testing.T) {
	code, out, errs := run(t, nil, "buildkit", "create", "--kubernetes", "-n", "buildkit", "--dry-run", "-o", "yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want, err := os.ReadFile(filepath.Join("..", "..", "deploy", "buildkit", "buildkitd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Fatalf("deploy/buildkit/buildkitd.yaml is not the output of create --dry-run -o yaml; regenerate it:\n%s", out)
	}
}

// TestBuildKitCreateRefuses: bad builder options are usage errors in one
// line before anything is asked of a cluster; -o yaml is refused where it
// prints nothing.
func TestBuildKitCreateRefuses(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[worker.oci\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"buildkit", "create"}, "pass --kubernetes"},
		{[]string{"buildkit", "create", "--kubernetes", "--replicas", "0"}, "--replicas 0"},
		{[]string{"buildkit", "create", "--kubernetes", "--requests", "gpu=1"}, "--requests \"gpu=1\""},
		{[]string{"buildkit", "create", "--kubernetes", "--limits", "memory=lots"}, "not a quantity"},
		{[]string{"buildkit", "create", "--kubernetes", "--toleration", "k=v:Sometimes"}, "--toleration"},
		{[]string{"buildkit", "create", "--kubernetes", "--node-selector", "novalue"}, "KEY=VALUE"},
		{[]string{"buildkit", "create", "--kubernetes", "--buildkitd-flag", "--addr=tcp://0.0.0.0:1234"}, "default socket"},
		{[]string{"buildkit", "create", "--kubernetes", "--buildkitd-config", bad}, "does not parse"},
		{[]string{"buildkit", "create", "--kubernetes", "--builder-registry-ca", "r:1=" + filepath.Join(dir, "none.pem")}, "cannot read --builder-registry-ca"},
		{[]string{"buildkit", "create", "--kubernetes", "Bad_Name", "--dry-run", "-o", "yaml"}, "not a valid object name"},
		{[]string{"buildkit", "create", "--kubernetes", "-o", "yaml"}, "needs --dry-run"},
		{[]string{"buildkit", "status", "-o", "yaml"}, "no yaml output"},
		{[]string{"buildkit", "rm"}, "pass --kubernetes"},
		{[]string{"build", "--buildkit-host", "kube://only-namespace"}, "not kube://NAMESPACE/NAME"},
	} {
		code, out, errs := run(t, nil, tc.args...)
		if code != int(fail.Usage) || !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") > 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want usage error with %q", tc.args, code, out, errs, tc.want)
		}
	}
}

// TestBuildKitCreateYAMLOptions: the options reach the printed objects.
func TestBuildKitCreateYAMLOptions(t *testing.T) {
	code, out, errs := run(t, nil, "buildkit", "create", "--kubernetes", "-n", "ci", "bk", "--replicas", "3", "--requests", "cpu=1,memory=2Gi",
		"--limits", "memory=4Gi,ephemeral-storage=10Gi", "--node-selector", "kubernetes.io/arch=arm64", "--toleration", "dedicated=builds:NoSchedule",
		"--buildkitd-flag", "--debug", "--image", "registry.example/buildkit:1", "--dry-run", "-o", "yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"replicas: 3", "cpu: \"1\"", "memory: 4Gi", "ephemeral-storage: 10Gi", "kubernetes.io/arch: arm64",
		"key: dedicated", "effect: NoSchedule", "- --debug", "image: registry.example/buildkit:1", "maxUsedSpace = \"8192MB\"", "namespace: ci", "name: bk"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}
