package buildkitd_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/buildkitd/kube"
	"github.com/idopipe/idopipe/pkg/manifest"
)

// TestDeployManifestsDryRun: deploy/buildkit/buildkitd.yaml (the output of
// `idopipe buildkit create --kubernetes -n buildkit --dry-run -o yaml`; a
// test in pkg/commands keeps it so) and rbac.yaml pass a server-side dry
// run against a real kube-apiserver, and the Deployment selects the Pods
// the kube:// dialer looks for.
func TestDeployManifestsDryRun(t *testing.T) {
	testenv.NeedStack(t)
	ctx := context.Background()
	stack, err := testenv.Start(ctx, "", testenv.Parts{Cluster: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stack.Stop() })
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	var objs []manifest.Object
	for _, f := range []string{"buildkitd.yaml", "rbac.yaml"} {
		o, err := manifest.ReadFile(filepath.Join(root, "deploy", "buildkit", f))
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o...)
	}
	cfg := stack.Cluster.Config
	if _, err := stack.Cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "buildkit"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		u := o.Unstructured
		kinds[u.GetKind()] = u
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: %v", gvk, err)
		}
		body, err := json.Marshal(u.Object)
		if err != nil {
			t.Fatal(err)
		}
		opts := metav1.PatchOptions{FieldManager: "idopipe-test", Force: new(true), DryRun: []string{metav1.DryRunAll}}
		if _, err := dyn.Resource(m.Resource).Namespace(u.GetNamespace()).Patch(ctx, u.GetName(), types.ApplyPatchType, body, opts); err != nil {
			t.Errorf("server-side apply (dry run) of %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	for _, k := range []string{"Deployment", "ConfigMap", "Role"} {
		if kinds[k] == nil {
			t.Fatalf("deploy/buildkit has no %s", k)
		}
	}
	labels, _, _ := unstructured.NestedStringMap(kinds["Deployment"].Object, "spec", "template", "metadata", "labels")
	for k, v := range kube.Selector("buildkitd") {
		if labels[k] != v {
			t.Errorf("the Pods lack the label %s=%s the kube:// dialer selects by: %v", k, v, labels)
		}
	}
}
