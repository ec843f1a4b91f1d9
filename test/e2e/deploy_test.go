package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/idopipe/idopipe/pkg/fail"
)

func podUIDs(t *testing.T, ns string) map[string]types.UID {
	t.Helper()
	pods, err := stack.Cluster.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]types.UID{}
	for _, p := range pods.Items {
		out[p.Name] = p.UID
	}
	return out
}

// TestDeployLifecycle: immutable Pods are recreated (or refused with
// --no-recreate), a ConfigMap change recreates the Pods that mount it,
// objects dropped from the manifest are pruned but unrelated ones survive,
// and diff / --dry-run show changes and write nothing.
func TestDeployLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ns = "lifecycle"
	kube := stack.Cluster.Client
	extraCM := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra-cm}\ndata: {k: v}\n"

	// A dry run of a release into a namespace that does not exist writes nothing.
	dry := idopipe(t, nil, releaseArgs(ns, "--dry-run")...)
	if dry.code != 0 || !strings.Contains(dry.stdout, "nothing was built, pushed or changed") || strings.Contains(dry.stdout, "==> build") {
		t.Fatalf("release --dry-run:\n%s", dry)
	}
	if _, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil {
		t.Fatal("release --dry-run created the namespace")
	}

	r := idopipe(t, nil, releaseWith(ns, fixtureWith(t, ns, nil, extraCM), "-o", "json")...)
	if r.code != 0 {
		t.Fatalf("release:\n%s", r)
	}
	ref := parseRelease(t, r).Result.Ref
	unrelated := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "unrelated", Namespace: ns}, Data: map[string]string{"a": "b"}}
	if _, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, unrelated, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deploy := func(manifest string, extra ...string) result {
		args := append([]string{"deploy", "--image", ref, "-n", ns, "--manifest", manifest, "--timeout", "60s",
			"--crds", filepath.Join(fixtures, "intents_crds_v1alpha1.yaml")}, extra...)
		return idopipe(t, nil, args...)
	}

	// A changed env var: the planner Pod must be recreated.
	envChanged := fixtureWith(t, ns, map[string]string{`value: "mongodb://planner-mongodb-service:27017/"`: `value: "mongodb://elsewhere:27017/"`}, extraCM)
	before := podUIDs(t, ns)
	rvs := resourceVersions(t, ctx, ns)
	refused := deploy(envChanged, "--no-recreate")
	if refused.code != int(fail.Cluster) || !strings.Contains(refused.stderr, "Pod/"+ns+"/planner") || !strings.Contains(refused.stderr, "--no-recreate") {
		t.Fatalf("--no-recreate:\n%s", refused)
	}
	for k, v := range resourceVersions(t, ctx, ns) {
		if rvs[k] != v {
			t.Errorf("--no-recreate refused but %s changed", k)
		}
	}

	d := idopipe(t, nil, "diff", "--image", ref, "-n", ns, "--manifest", envChanged)
	if d.code != 1 || // 1: differences
		!strings.Contains(d.stdout, "Pod/"+ns+"/planner: recreate") || !strings.Contains(d.stdout, "+      value: mongodb://elsewhere:27017/") ||
		!strings.Contains(d.stdout, "Secret/"+ns+"/ghcr-secret: unchanged (data not shown)") {
		t.Fatalf("diff:\n%s", d)
	}
	if strings.Contains(d.stdout, stack.Registry.Password) || strings.Contains(d.stdout, b64(stack.Registry.Username+":"+stack.Registry.Password)) {
		t.Error("diff shows the Secret's data")
	}

	rec := deploy(envChanged)
	if rec.code != 0 || !strings.Contains(rec.stdout, "recreating Pod/"+ns+"/planner") || !strings.Contains(rec.stdout, "2/2 Pods Ready") {
		t.Fatalf("deploy with a changed env:\n%s", rec)
	}
	after := podUIDs(t, ns)
	if after["planner"] == before["planner"] || after["planner-mongodb"] != before["planner-mongodb"] {
		t.Errorf("want planner recreated and planner-mongodb kept: before %v after %v", before, after)
	}

	// A ConfigMap change recreates the Pod that mounts it, and the manifest
	// no longer has extra-cm: it is pruned; "unrelated" stays.
	cmChanged := fixtureWith(t, ns, map[string]string{
		`value: "mongodb://planner-mongodb-service:27017/"`: `value: "mongodb://elsewhere:27017/"`,
		`"workers": 2,`: `"workers": 8,`,
	})
	before = after
	rec = deploy(cmChanged)
	if rec.code != 0 || !strings.Contains(rec.stdout, "recreating Pod/"+ns+"/planner: ConfigMap planner-configmap changes") ||
		!strings.Contains(rec.stdout, "ConfigMap/"+ns+"/extra-cm pruned") {
		t.Fatalf("deploy with a changed ConfigMap:\n%s", rec)
	}
	after = podUIDs(t, ns)
	if after["planner"] == before["planner"] || after["planner-mongodb"] != before["planner-mongodb"] {
		t.Errorf("want planner recreated and planner-mongodb kept: before %v after %v", before, after)
	}
	if _, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, "extra-cm", metav1.GetOptions{}); err == nil {
		t.Error("extra-cm was not pruned")
	}
	if _, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, "unrelated", metav1.GetOptions{}); err != nil {
		t.Errorf("an object idopipe did not apply was touched: %v", err)
	}

	// Nothing changed: no writes.
	rvs = resourceVersions(t, ctx, ns)
	if again := deploy(cmChanged); again.code != 0 || !strings.Contains(again.stdout, "0 created, 0 configured, 0 recreated, 0 pruned") {
		t.Fatalf("no-op deploy:\n%s", again)
	}
	for k, v := range resourceVersions(t, ctx, ns) {
		if rvs[k] != v {
			t.Errorf("no-op deploy changed %s", k)
		}
	}
}
