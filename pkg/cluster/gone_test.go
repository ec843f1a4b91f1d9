package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
)

func podObject(name string) manifest.Object {
	return manifest.Object{Unstructured: &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": name, "namespace": "ido"},
	}}}
}

// TestWaitEndsWhenABarePodIsGone: a bare Pod deleted during the wait ends
// it at once, saying who when the events do, and that a rerun recreates it.
func TestWaitEndsWhenABarePodIsGone(t *testing.T) {
	core := fake.NewClientset(&corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "planner.1", Namespace: "ido"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "planner", Namespace: "ido"},
		Reason:         "Evicted", Message: "The node was low on resource: memory.",
	})
	c := &Client{Core: core}
	start := time.Now()
	_, err := c.Wait(context.Background(), "ido", []manifest.Object{podObject("planner")}, WaitOptions{Timeout: time.Minute})
	if fail.ClassOf(err) != fail.NotReady || !strings.Contains(err.Error(), "was deleted during the wait") ||
		!strings.Contains(err.Error(), "evicted it (The node was low on resource: memory.)") || !strings.Contains(err.Error(), "rerun") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
}

// TestWaitNamesASilentKubelet: a Pod bound to a node whose kubelet has
// not renewed its Lease for longer than one and a half renewals ends the
// wait naming the node and the time since its last heartbeat.
func TestWaitNamesASilentKubelet(t *testing.T) {
	renewed := metav1.NewMicroTime(time.Now().Add(-17 * time.Second))
	core := fake.NewClientset(
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "planner", Namespace: "ido"}, Spec: corev1.PodSpec{NodeName: "node-1"},
			Status: corev1.PodStatus{Phase: corev1.PodPending}},
		&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Namespace: NodeLeaseNamespace},
			Spec: coordinationv1.LeaseSpec{RenewTime: &renewed, LeaseDurationSeconds: ptr(int32(40))}},
	)
	c := &Client{Core: core}
	_, err := c.Wait(context.Background(), "ido", []manifest.Object{podObject("planner")}, WaitOptions{Timeout: time.Minute})
	if fail.ClassOf(err) != fail.NotReady || !strings.Contains(err.Error(), "node node-1") || !strings.Contains(err.Error(), "has not renewed its heartbeat for 17s") {
		t.Fatalf("err = %v", err)
	}
	if _, stale := heartbeatStale(time.Now().Add(-9*time.Second), 40*time.Second, time.Now()); stale {
		t.Error("a heartbeat 9s old (renewed every 10s) counts as stale")
	}
}
