package buildkitd_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/manifest"
)

// TestDeployManifestsDryRun: deploy/buildkit/buildkitd.yaml passes a
// server-side dry run against a real kube-apiserver (its schema and
// validation), and wires the mTLS Secret to the daemon's TLS flags and the
// Service to the daemon's port.
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
	objs, err := manifest.ReadFile(filepath.Join(root, "deploy", "buildkit", "buildkitd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := stack.Cluster.Config
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

	// Namespaced objects cannot be dry-run into a namespace that does not
	// exist: the Namespace is created for real, everything else dry-run.
	kinds := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		u := &unstructured.Unstructured{Object: o.Object}
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
		opts := metav1.PatchOptions{FieldManager: "idopipe-test", Force: new(true)}
		if u.GetKind() != "Namespace" {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if ns := u.GetNamespace(); ns != "" {
			ri = dyn.Resource(m.Resource).Namespace(ns)
		}
		if _, err := ri.Patch(ctx, u.GetName(), types.ApplyPatchType, body, opts); err != nil {
			t.Errorf("server-side apply (dry run) of %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	for _, k := range []string{"Namespace", "Deployment", "Service"} {
		if kinds[k] == nil {
			t.Fatalf("deploy/buildkit/buildkitd.yaml has no %s", k)
		}
	}

	var dep appsv1.Deployment
	var svc corev1.Service
	fromUnstructured(t, kinds["Deployment"], &dep)
	fromUnstructured(t, kinds["Service"], &svc)
	c := dep.Spec.Template.Spec.Containers[0]
	for _, want := range [][]string{{"--tlscacert", "/certs/ca.pem"}, {"--tlscert", "/certs/cert.pem"}, {"--tlskey", "/certs/key.pem"}, {"--addr", "tcp://0.0.0.0:1234"}} {
		i := slices.Index(c.Args, want[0])
		found := false
		for i >= 0 && i+1 < len(c.Args) {
			if c.Args[i+1] == want[1] {
				found = true
				break
			}
			j := slices.Index(c.Args[i+1:], want[0])
			if j < 0 {
				break
			}
			i += 1 + j
		}
		if !found {
			t.Errorf("buildkitd args %v lack %s %s", c.Args, want[0], want[1])
		}
	}
	var secret string
	for _, v := range dep.Spec.Template.Spec.Volumes {
		for _, vm := range c.VolumeMounts {
			if vm.Name == v.Name && vm.MountPath == "/certs" && v.Secret != nil {
				secret = v.Secret.SecretName
			}
		}
	}
	if secret != "buildkit-daemon-certs" {
		t.Errorf("/certs is not mounted from Secret buildkit-daemon-certs (got %q)", secret)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 1234 || svc.Spec.Ports[0].TargetPort.StrVal != c.Ports[0].Name {
		t.Errorf("Service ports %+v do not reach the container port %+v", svc.Spec.Ports, c.Ports)
	}
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("Service selector %s=%s does not select the Deployment's Pods", k, v)
		}
	}
}

func fromUnstructured(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	b, err := json.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatal(err)
	}
}
