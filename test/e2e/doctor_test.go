package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/idopipe/idopipe/pkg/fail"
)

// TestDoctor runs the guide's checklist on a healthy release, then breaks
// what the guide's ErrImagePull section lists, one thing at a time.
func TestDoctor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ns = "doctor"
	if r := idopipe(t, nil, releaseArgs(ns)...); r.code != 0 {
		t.Fatalf("release:\n%s", r)
	}
	kube := stack.Cluster.Client
	doctor := func() result {
		return idopipe(t, nil, "doctor", "-n", ns, "--registry-ca", stack.Registry.CAFile)
	}
	ok := doctor()
	if ok.code != 0 || strings.Contains(ok.stdout, "✗") || !strings.Contains(ok.stdout, "✓ ServiceAccount planner-service-account of Pod planner references ghcr-secret") ||
		!strings.Contains(ok.stdout, "is pullable with the Secret's credentials") {
		t.Fatalf("doctor on a healthy release:\n%s", ok)
	}

	// The ServiceAccount loses its imagePullSecrets.
	patch := []byte(`{"imagePullSecrets":null}`)
	if _, err := kube.CoreV1().ServiceAccounts(ns).Patch(ctx, "planner-service-account", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	r := doctor()
	if r.code != int(fail.Credentials) || !strings.Contains(r.stdout, "✗ ServiceAccount planner-service-account of Pod planner references ghcr-secret") || !strings.Contains(r.stdout, "add imagePullSecrets") {
		t.Errorf("doctor with the Secret not on the ServiceAccount:\n%s", r)
	}

	// The Secret holds a stale token: pulling with it fails.
	stale := `{"auths":{"` + stack.Registry.Host + `":{"username":"` + stack.Registry.Username + `","password":"ghp_stale"}}}`
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "ghcr-secret", Namespace: ns}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(stale)}}
	if _, err := kube.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r = doctor()
	// GHCR's token endpoint refuses it: 403 DENIED.
	if r.code == 0 || !strings.Contains(r.stdout, "✗ "+stack.Registry.Host) || !strings.Contains(r.stdout, `403 "denied"`) || !strings.Contains(r.stdout, "refused the credentials") {
		t.Errorf("doctor with a stale token:\n%s", r)
	}

	// The Secret is gone.
	if err := kube.CoreV1().Secrets(ns).Delete(ctx, "ghcr-secret", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r = doctor()
	if r.code != int(fail.Credentials) || !strings.Contains(r.stdout, "✗ Secret ghcr-secret exists") {
		t.Errorf("doctor without the Secret:\n%s", r)
	}
	if r := idopipe(t, nil, "doctor", "-n", "no-such-namespace"); r.code != int(fail.Cluster) || !strings.Contains(r.stdout, "✗ namespace no-such-namespace exists") {
		t.Errorf("doctor on a missing namespace:\n%s", r)
	}
}

// TestTeardown deletes only what idopipe applied: namespaced objects first,
// cluster-scoped ones and the namespace on request.
func TestTeardown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ns = "teardown"
	manifest := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(manifest, []byte(`apiVersion: v1
kind: ConfigMap
metadata: {name: td-config}
data: {a: b}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: teardown-role}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
---
apiVersion: v1
kind: Pod
metadata: {name: planner}
spec:
  containers: [{name: planner, image: planner:0.4.0, securityContext: {runAsUser: 10001, runAsGroup: 10001}}]
  tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := idopipe(t, nil, releaseWith(ns, manifest)...); r.code != 0 {
		t.Fatalf("release:\n%s", r)
	}
	kube := stack.Cluster.Client
	keep := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "not-ours", Namespace: ns}}
	if _, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, keep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := idopipe(t, nil, "teardown", "-n", ns)
	if r.code != 0 {
		t.Fatalf("teardown:\n%s", r)
	}
	gone := func(err error) bool { return apierrors.IsNotFound(err) }
	_, errCM := kube.CoreV1().ConfigMaps(ns).Get(ctx, "td-config", metav1.GetOptions{})
	_, errSecret := kube.CoreV1().Secrets(ns).Get(ctx, "ghcr-secret", metav1.GetOptions{})
	_, errPod := kube.CoreV1().Pods(ns).Get(ctx, "planner", metav1.GetOptions{})
	if !gone(errCM) || !gone(errSecret) || !gone(errPod) {
		t.Errorf("namespaced objects left: configmap %v, secret %v, pod %v\n%s", errCM, errSecret, errPod, r)
	}
	if _, err := kube.RbacV1().ClusterRoles().Get(ctx, "teardown-role", metav1.GetOptions{}); err != nil {
		t.Errorf("the ClusterRole went without --cluster-scoped: %v", err)
	}
	if _, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, "not-ours", metav1.GetOptions{}); err != nil {
		t.Errorf("teardown deleted an object idopipe did not apply: %v", err)
	}
	if r := idopipe(t, nil, "teardown", "-n", ns, "--cluster-scoped", "--delete-namespace"); r.code != 0 {
		t.Fatalf("teardown --cluster-scoped:\n%s", r)
	}
	if _, err := kube.RbacV1().ClusterRoles().Get(ctx, "teardown-role", metav1.GetOptions{}); !gone(err) {
		t.Errorf("the ClusterRole survived --cluster-scoped: %v", err)
	}
	n, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err == nil && n.DeletionTimestamp == nil {
		t.Error("the namespace survived --delete-namespace")
	}
}
