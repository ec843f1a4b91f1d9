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
		{[]string{"buildkit", "create", "--kubernetes", "--platform", "linux/arm64,linux/amd64", "--platform", "linux/arm64/v8"}, "--platform linux/arm64 is given twice"},
		{[]string{"buildkit", "create", "--kubernetes", "--platform", "linux/arm65"}, `unknown platform "linux/arm65"`},
		{[]string{"buildkit", "create", "--kubernetes", "--platform", "arm64"}, "name both OS and architecture"},
		{[]string{"buildkit", "create", "--kubernetes", "--platform", "linux/amd64", "--platform-node-selector", "linux/arm64=a=b"}, "the builder has no platform linux/arm64: add --platform linux/arm64, or give selectors only for linux/amd64"},
		{[]string{"buildkit", "create", "--kubernetes", "--platform-node-selector", "linux/arm64=a=b"}, "the builder has no platform linux/arm64: add --platform linux/arm64"},
		{[]string{"buildkit", "create", "--kubernetes", "--platform", "linux/arm64", "--platform-node-selector", "linux/arm64=a"}, "is not PLATFORM=KEY=VALUE"},
		{[]string{"buildkit", "create", "--kubernetes", "--platform", "linux/arm64", "--platform-node-selector", "linux/arm64=a=b c"}, `node selector a="b c"`},
		{[]string{"buildkit", "create", "--kubernetes", "--platform", "linux/arm64", "--buildkitd-flag", "--oci-worker-platform=linux/amd64"}, "each builder serves its own platform"},
		{[]string{"buildkit", "create", "--kubernetes", strings.Repeat("b", 45), "--platform", "linux/arm64", "--dry-run", "-o", "yaml"}, "more than 52"},
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

// TestBuildKitCreatePlatforms: --platform prints one builder per platform
// (NAME-OS-ARCH), each on its platform's nodes or the override given for
// it, its buildkitd serving that platform; the order is the flags'.
func TestBuildKitCreatePlatforms(t *testing.T) {
	code, out, errs := run(t, nil, "buildkit", "create", "--kubernetes", "-n", "ci", "bk", "--platform", "linux/amd64", "--platform", "linux/arm64,linux/arm/v7",
		"--platform-node-selector", "linux/arm/v7=example.com/arm=v7", "--platform-node-selector", "linux/arm/v7=pool=arm", "--node-selector", "tier=build", "--dry-run", "-o", "yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	docs := strings.Split(out, "\n---\n")
	if len(docs) != 6 {
		t.Fatalf("%d documents:\n%s", len(docs), out)
	}
	for i, w := range []struct {
		name, platform string
		sel            []string
		not            string
	}{
		{"bk-linux-amd64", "linux/amd64", []string{"kubernetes.io/arch: amd64", "kubernetes.io/os: linux", "tier: build"}, "pool: arm"},
		{"bk-linux-arm64", "linux/arm64", []string{"kubernetes.io/arch: arm64", "kubernetes.io/os: linux", "tier: build"}, "pool: arm"},
		{"bk-linux-arm-v7", "linux/arm/v7", []string{"example.com/arm: v7", "pool: arm", "tier: build"}, "kubernetes.io/arch"},
	} {
		cm, dep := docs[2*i], docs[2*i+1]
		if !strings.Contains(cm, "name: "+w.name+"-config\n") || !strings.Contains(dep, "kind: Deployment") || !strings.Contains(dep, "name: "+w.name+"\n") {
			t.Errorf("documents %d, %d are not %s's:\n%s\n---\n%s", 2*i, 2*i+1, w.name, cm, dep)
		}
		for _, want := range append(w.sel, "--oci-worker-platform="+w.platform, "idopipe.dev/platform: "+w.platform, "idopipe.dev/builder: bk") {
			if !strings.Contains(dep, want) {
				t.Errorf("%s lacks %q:\n%s", w.name, want, dep)
			}
		}
		if strings.Contains(dep, w.not) {
			t.Errorf("%s has %q:\n%s", w.name, w.not, dep)
		}
	}
}
