package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestReleaseSeveralImages builds the planner and an actuator plugin image
// in one release, pushes both, and deploys each into the containers that
// run it.
func TestReleaseSeveralImages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	actuator := filepath.Join(dir, "actuator")
	if err := os.MkdirAll(actuator, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		// The plugin is a real static binary (the planner fixture's, which
		// serves its port): the node runs it.
		"Dockerfile":    "FROM scratch\nCOPY plugin.conf /etc/plugin.conf\nCOPY plugin /plugin\nUSER 10001\nENTRYPOINT [\"/plugin\", \"-config\", \"/etc/plugin.conf\"]\n",
		"plugin.conf":   "actuator=rmpod\n",
		"manifest.yaml": "apiVersion: v1\nkind: Pod\nmetadata: {name: rmpod-actuator}\nspec:\n  containers: [{name: actuator, image: actuator:0.4.0}]\n  tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists}]\n",
	} {
		if err := os.WriteFile(filepath.Join(actuator, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := os.ReadFile(filepath.Join(source, "planner"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(actuator, "plugin"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	const ns = "several"
	r := idopipe(t, nil, releaseArgs(ns, "--extra-image", "name=actuator,source="+actuator,
		"--manifest", filepath.Join(actuator, "manifest.yaml"), "-o", "json")...)
	if r.code != 0 {
		t.Fatalf("release of two images:\n%s", r)
	}
	res := parseRelease(t, r)
	var extra []struct{ Name, Ref, Digest string }
	if err := jsonField(r, "extraImages", &extra); err != nil || len(extra) != 1 || extra[0].Name != "actuator" {
		t.Fatalf("extra images %+v (%v)", extra, err)
	}
	for _, ref := range []string{res.Result.Ref, extra[0].Ref} {
		if v := idopipe(t, nil, "verify-pull", "--registry-ca", stack.Registry.CAFile, ref); v.code != 0 {
			t.Errorf("%s not pullable:\n%s", ref, v)
		}
	}
	// A rerun pushes neither image again.
	again := idopipe(t, nil, releaseArgs(ns, "--extra-image", "name=actuator,source="+actuator,
		"--manifest", filepath.Join(actuator, "manifest.yaml"))...)
	if again.code != 0 || strings.Count(again.stdout, "is already in the registry: not pushed again") != 2 {
		t.Errorf("rerun of the two-image release:\n%s", again)
	}
	pod, err := stack.Cluster.Client.CoreV1().Pods(ns).Get(context.Background(), "rmpod-actuator", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := pod.Spec.Containers[0].Image; img != extra[0].Ref {
		t.Errorf("actuator Pod runs %s, want %s", img, extra[0].Ref)
	}
}
