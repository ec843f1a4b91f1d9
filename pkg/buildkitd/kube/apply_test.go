package kube_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/buildkitd/kube"
	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/fail"
)

// TestCreateRemove against a real API server (no node: the Pods stay
// Pending): create applies, an unchanged rerun writes nothing, a changed one
// updates in place, moving to --storage swaps the Deployment for a
// StatefulSet, and Remove deletes only what carries the builder's labels.
// The dialer says in one line why there is no Ready replica.
func TestCreateRemove(t *testing.T) {
	testenv.NeedStack(t)
	ctx := context.Background()
	stack, err := testenv.Start(ctx, "", testenv.Parts{Cluster: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stack.Stop() })
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &stack.Cluster.Kubeconfig
	kc, err := cluster.New(ctx, flags)
	if err != nil {
		t.Fatal(err)
	}
	const ns = "builders"
	cfg := kube.Config{Namespace: ns, Name: "bk", Replicas: 1}
	if _, err := kube.Create(ctx, kc, cfg, kube.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "namespace builders does not exist") {
		t.Fatalf("create into a missing namespace: %v", err)
	}
	if _, err := stack.Cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	statuses := func(b kube.Builder) string {
		var s []string
		for _, a := range b.Applied {
			s = append(s, a.Ref+" "+string(a.Status))
		}
		return strings.Join(s, ", ")
	}
	b, err := kube.Create(ctx, kc, cfg, kube.CreateOptions{})
	if err != nil || statuses(b) != "ConfigMap/builders/bk-config created, Deployment/builders/bk created" {
		t.Fatalf("create: %v %s", err, statuses(b))
	}
	// Let the deployment controller settle (it annotates the revision).
	for i := 0; ; i++ {
		d, err := stack.Cluster.Client.AppsV1().Deployments(ns).Get(ctx, "bk", metav1.GetOptions{})
		if err == nil && d.Annotations["deployment.kubernetes.io/revision"] != "" && d.Status.ObservedGeneration == d.Generation {
			break
		}
		if i == 100 {
			t.Fatalf("the deployment controller did not see the builder: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if b, err = kube.Create(ctx, kc, cfg, kube.CreateOptions{}); err != nil || statuses(b) != "ConfigMap/builders/bk-config unchanged, Deployment/builders/bk unchanged" {
		t.Fatalf("unchanged create: %v %s", err, statuses(b))
	}
	cfg.Replicas = 3
	if b, err = kube.Create(ctx, kc, cfg, kube.CreateOptions{}); err != nil || statuses(b) != "ConfigMap/builders/bk-config unchanged, Deployment/builders/bk configured" {
		t.Fatalf("changed create: %v %s", err, statuses(b))
	}
	d, err := stack.Cluster.Client.AppsV1().Deployments(ns).Get(ctx, "bk", metav1.GetOptions{})
	if err != nil || *d.Spec.Replicas != 3 {
		t.Fatalf("replicas not updated: %v", err)
	}

	// No node: Pods exist but none is Ready.
	dialer, err := kube.NewDialer(stack.Cluster.Config, ns, "bk")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dialer.Dial(ctx, "k"); err == nil || fail.ClassOf(err) != fail.Daemon || !strings.Contains(err.Error(), "has no Ready replica") {
		t.Errorf("dial a builder without Ready replicas: %v", err)
	}
	for addr, want := range map[[2]string]string{
		{ns, "none"}:      "no builder none in namespace builders",
		{"nowhere", "bk"}: "namespace nowhere does not exist",
	} {
		d, _ := kube.NewDialer(stack.Cluster.Config, addr[0], addr[1])
		if _, err := d.Dial(ctx, "k"); err == nil || fail.ClassOf(err) != fail.Daemon || !strings.Contains(err.Error(), want) {
			t.Errorf("dial %v: %v", addr, err)
		}
	}

	cfg.Storage = "1Gi"
	if b, err = kube.Create(ctx, kc, cfg, kube.CreateOptions{}); err != nil ||
		statuses(b) != "Deployment/builders/bk deleted, ConfigMap/builders/bk-config unchanged, StatefulSet/builders/bk created" {
		t.Fatalf("create with storage: %v %s", err, statuses(b))
	}
	// A ConfigMap of the builder's name that create did not write stays, and
	// so do the claims (the cache), listed.
	if _, err := stack.Cluster.Client.CoreV1().ConfigMaps(ns).Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bk-config"}}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The StatefulSet controller makes the claim with the first Pod; on a
	// busy machine that can take a while.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := stack.Cluster.Client.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) > 0, nil
	}); err != nil {
		t.Fatalf("the StatefulSet controller made no claim: %v", err)
	}
	r, err := kube.Remove(ctx, kc, ns, "bk", 0)
	if err != nil || len(r.Deleted) != 1 || r.Deleted[0].Ref != "StatefulSet/builders/bk" || len(r.Kept) < 2 ||
		!strings.Contains(r.Kept[0], "ConfigMap/builders/bk-config (not written by") || !strings.Contains(r.Kept[1], "PersistentVolumeClaim/builders/state-bk-") {
		t.Fatalf("remove: %v %+v", err, r)
	}
	if _, err := stack.Cluster.Client.CoreV1().ConfigMaps(ns).Get(ctx, "bk-config", metav1.GetOptions{}); err != nil {
		t.Errorf("Remove deleted a ConfigMap create no longer owns: %v", err)
	}
	if _, err := kube.Remove(ctx, kc, ns, "other", 0); err == nil || fail.ClassOf(err) != fail.Usage || !strings.Contains(err.Error(), "no builder other") {
		t.Errorf("remove of no builder: %v", err)
	}
}
