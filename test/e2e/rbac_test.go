package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
)

// TestLeastPrivilege deploys with a ServiceAccount bound to exactly
// deploy/rbac/idopipe-deployer.yaml, then, without the binding, checks that
// the error names the missing permission.
func TestLeastPrivilege(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kube := stack.Cluster.Client
	ref := pushedImage(t)
	const saNS, sa = "idopipe-system", "idopipe-deployer"
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: saNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().ServiceAccounts(saNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifest.ReadFile(filepath.Join(root, "deploy", "rbac", "idopipe-deployer.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := runtimeFromUnstructured(objs[0].Object, &role); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: sa},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: saNS}}}
	if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kc := serviceAccountKubeconfig(t, saNS, sa)
	deploy := func(ns string) result {
		return idopipe(t, []string{"KUBECONFIG=" + kc}, "deploy", "--image", ref, "-n", ns,
			"--manifest", manifestFor(ns),
			"--crds", filepath.Join(fixtures, "intents_crds_v1alpha1.yaml"), "--timeout", "60s")
	}
	if r := deploy("least-privilege"); r.code != 0 || !strings.Contains(r.stdout, "2/2 Pods Ready") {
		t.Fatalf("deploy as %s:\n%s", sa, r)
	}
	if err := kube.RbacV1().ClusterRoleBindings().Delete(ctx, sa, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r := deploy("least-privilege-2")
	if r.code != int(fail.Cluster) || !strings.Contains(r.stderr, "not allowed to") || !strings.Contains(r.stderr, `cannot get resource "namespaces"`) {
		t.Fatalf("deploy without the binding:\n%s", r)
	}
}
