package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/idopipe/idopipe/pkg/fail"
)

// TestConfigFile: idopipe.yaml drives a release; $IDOPIPE_* overrides it,
// and flags override both; unknown keys and bad values name key and line;
// init writes a config for an IDO checkout.
func TestConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "idopipe.yaml")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(cfg, `# a release described in a file
images:
  - name: planner
    source: `+source+`
    version: "0.4.0"
registry: `+stack.Registry.Host+`
registry-ca: `+stack.Registry.CAFile+`
owner: From-Config
build-context: golang:1.24.6=oci-layout://`+busybox+`
manifest:
  - `+manifestFor("from-config")+`
crds: [`+filepath.Join(fixtures, "intents_crds_v1alpha1.yaml")+`]
namespace: from-config
progress: plain
timeout: 60s
`)
	r := idopipe(t, []string{"IDOPIPE_NAMESPACE=from-env"}, "release", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "/from-config/planner:0.4.0@sha256:") || !strings.Contains(r.stdout, "to namespace from-env") {
		t.Fatalf("release from the config file with $IDOPIPE_NAMESPACE:\n%s", r)
	}
	r = idopipe(t, []string{"IDOPIPE_NAMESPACE=from-env"}, "release", "--config", cfg, "-n", "from-flag")
	if r.code != 0 || !strings.Contains(r.stdout, "to namespace from-flag") {
		t.Fatalf("-n over $IDOPIPE_NAMESPACE:\n%s", r)
	}
	if _, err := stack.Cluster.Client.CoreV1().Namespaces().Get(context.Background(), "from-config", metav1.GetOptions{}); err == nil {
		t.Error("the file's namespace was used although $IDOPIPE_NAMESPACE and -n override it")
	}

	bad := filepath.Join(dir, "bad.yaml")
	for _, tc := range []struct{ content, want string }{
		{"owner: x\nnonsense: 1\n", bad + ":2: unknown key \"nonsense\""},
		{"owner: x\n\ntimeout: soon\n", bad + ":3: key \"timeout\""},
		{"images:\n  - name: planner\n    color: blue\n", bad + ":3: unknown image key \"color\""},
		{"- just\n- a list\n", "the top level must be a mapping"},
	} {
		write(bad, tc.content)
		r := idopipe(t, nil, "release", "--config", bad)
		if r.code != int(fail.Usage) || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("config %q: want exit 2 and %q:\n%s", tc.content, tc.want, r)
		}
	}
	if r := idopipe(t, nil, "release", "--config", filepath.Join(dir, "missing.yaml")); r.code != int(fail.Usage) || !strings.Contains(r.stderr, "cannot read config") {
		t.Errorf("missing --config:\n%s", r)
	}

	// init on something shaped like an IDO checkout.
	ido := filepath.Join(dir, "ido")
	for _, p := range []string{"Dockerfile", "artefacts/deploy/manifest.yaml", "artefacts/intents_crds_v1alpha1.yaml"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(ido, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		write(filepath.Join(ido, p), "x")
	}
	out := filepath.Join(dir, "init.yaml")
	if r := idopipe(t, nil, "init", "--source", ido, "--out", out); r.code != 0 {
		t.Fatalf("init:\n%s", r)
	}
	b, _ := os.ReadFile(out)
	for _, want := range []string{"name: planner", "registry: ghcr.io", filepath.Join(ido, "artefacts/deploy/manifest.yaml"), "namespace: ido"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("init wrote no %q:\n%s", want, b)
		}
	}
	if r := idopipe(t, nil, "init", "--source", ido, "--out", out); r.code != int(fail.Usage) || !strings.Contains(r.stderr, "--force") {
		t.Errorf("init over an existing file:\n%s", r)
	}
	// What init wrote is a valid config: a dry run accepts it up to the cluster.
	r = idopipe(t, nil, "release", "--config", out, "--dry-run", "--owner", "o")
	if strings.Contains(r.stderr, "config ") {
		t.Errorf("init's config is not accepted:\n%s", r)
	}
}
