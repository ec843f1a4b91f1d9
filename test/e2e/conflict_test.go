package e2e

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/idopipe/idopipe/pkg/fail"
)

// TestFieldManagerConflict: a field another manager took over stops the
// release before any write, naming the field and the manager;
// --force-conflicts takes it back.
func TestFieldManagerConflict(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ns = "conflict"
	if r := idopipe(t, nil, releaseArgs(ns)...); r.code != 0 {
		t.Fatalf("release:\n%s", r)
	}
	ac := corev1ac.ConfigMap("planner-configmap", ns).WithData(map[string]string{"defaults.json": "{}"})
	if _, err := stack.Cluster.Client.CoreV1().ConfigMaps(ns).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: "someone-else", Force: true}); err != nil {
		t.Fatal(err)
	}
	before := resourceVersions(t, ctx, ns)
	r := idopipe(t, nil, releaseArgs(ns)...)
	if r.code != int(fail.Cluster) || !strings.Contains(r.stderr, `"someone-else"`) || !strings.Contains(r.stderr, ".data.defaults.json") || !strings.Contains(r.stderr, "--force-conflicts") {
		t.Fatalf("release over another manager's field:\n%s", r)
	}
	for k, v := range resourceVersions(t, ctx, ns) {
		if before[k] != v {
			t.Errorf("the refused release wrote %s", k)
		}
	}
	r = idopipe(t, nil, releaseArgs(ns, "--force-conflicts")...)
	if r.code != 0 || !strings.Contains(r.stdout, "recreating Pod/"+ns+"/planner: ConfigMap planner-configmap changes") {
		t.Fatalf("release --force-conflicts:\n%s", r)
	}
	cm, err := stack.Cluster.Client.CoreV1().ConfigMaps(ns).Get(ctx, "planner-configmap", metav1.GetOptions{})
	if err != nil || cm.Data["defaults.json"] == "{}" {
		t.Errorf("--force-conflicts did not take the field back: %v", err)
	}
}
