package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/idopipe/idopipe/pkg/fail"
)

// TestReleaseLock: a live holder of the namespace's release Lease makes a
// release wait and then fail naming the holder; two releases at once into
// one namespace both end consistent; two into different namespaces both
// succeed.
func TestReleaseLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ns = "locked"
	kube := stack.Cluster.Client
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	holder, now, secs := "someone@elsewhere pid 42", metav1.NewMicroTime(time.Now()), int32(300)
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "idopipe-release", Namespace: ns},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, AcquireTime: &now, RenewTime: &now, LeaseDurationSeconds: &secs}}
	if _, err := kube.CoordinationV1().Leases(ns).Create(ctx, lease, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := idopipe(t, nil, releaseArgs(ns, "--lock-timeout", "2s")...)
	if r.code != int(fail.Cluster) || !strings.Contains(r.stderr, "holds the lock: "+holder) || !strings.Contains(r.stdout, "waiting for the release lock") {
		t.Fatalf("release against a held lock:\n%s", r)
	}
	if err := kube.CoordinationV1().Leases(ns).Delete(ctx, "idopipe-release", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// Two at once into one namespace, and one into another (the fixture's
	// Pods request little, so both namespaces' Pods fit on the node).
	var wg sync.WaitGroup
	results := make([]result, 3)
	for i, n := range []string{"together", "together", "apart"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = idopipe(t, nil, releaseArgs(n)...)
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("release %d failed:\n%s", i, r)
		}
	}
	l, err := kube.CoordinationV1().Leases("together").Get(ctx, "idopipe-release", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != "" {
		t.Errorf("the lock was not released: %v %v", l, err)
	}
}

// TestInterrupt: SIGINT during the wait stage stops the release cleanly,
// names the stage, and a rerun converges.
func TestInterrupt(t *testing.T) {
	t.Parallel()
	const ns = "interrupted"
	// The planner runs but never passes its readiness probe: the wait
	// stage waits.
	manifest := fixtureWith(t, ns, map[string]string{"      imagePullPolicy: Always\n": "      imagePullPolicy: Always\n      readinessProbe: {tcpSocket: {port: 4444}, periodSeconds: 1}\n"})
	var waiting time.Time // when the wait stage started
	r := interrupt(t, releaseWith(ns, manifest, "--timeout", "5m"), func(out string) bool {
		if waiting.IsZero() && strings.Contains(out, "==> wait") {
			waiting = time.Now()
		}
		return !waiting.IsZero() && time.Since(waiting) > 500*time.Millisecond
	})
	if r.code != int(fail.Interrupted) || !strings.Contains(r.stdout, "interrupted during stage wait (done: validate, build, checks, push, verify-pull, secret, apply)") {
		t.Fatalf("SIGINT in the wait stage:\n%s", r)
	}
	// The rerun (without the probe) converges: the planner Pod is recreated.
	again := idopipe(t, nil, releaseArgs(ns)...)
	if again.code != 0 || !strings.Contains(again.stdout, "2/2 Pods Ready") {
		t.Fatalf("rerun after the interrupt:\n%s", again)
	}
}
