package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/fail"
)

// TestLostLock: a release whose release Lease another holder takes over
// (as after a lapse while the API server was away) stops before its next
// request with one line and exit code 16, and a rerun converges.
func TestLostLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ns = "lock-lost"
	leases := stack.Cluster.Client.CoordinationV1().Leases(ns)
	never := fixtureWith(t, ns, map[string]string{`      args: ["-config", "/config/defaults.json", "-v", "2"]` + "\n": `      args: ["-config", "/config/defaults.json", "-v", "2"]` + "\n" +
		"      readinessProbe: {tcpSocket: {port: 4444}, periodSeconds: 1}\n"})
	stop := make(chan struct{})
	stopped := make(chan struct{})
	var took time.Time
	args := withArg(releaseWith(ns, never), "--timeout", "120s")
	r := runUntil(t, args, func(string) bool {
		p, err := stack.Cluster.Client.CoreV1().Pods(ns).Get(ctx, "planner", metav1.GetOptions{})
		if err != nil || p.Status.Phase != corev1.PodRunning {
			time.Sleep(200 * time.Millisecond)
			return false
		}
		return true
	}, func(*exec.Cmd) {
		// Another holder takes the Lease and keeps renewing it.
		go func() {
			defer close(stopped)
			intruder := "intruder@test"
			for {
				if l, err := leases.Get(ctx, cluster.LockName, metav1.GetOptions{}); err == nil {
					now := metav1.NewMicroTime(time.Now())
					l.Spec.HolderIdentity, l.Spec.RenewTime = &intruder, &now
					if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err == nil && took.IsZero() {
						took = time.Now()
					}
				}
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
			}
		}()
	})
	close(stop)
	<-stopped
	last := lastLine(r.stdout)
	if r.code != int(fail.LockLost) || !strings.Contains(r.stdout, "lost the release lock of namespace "+ns+" to intruder@test") {
		t.Fatalf("release whose lock was taken over: exit %d, want %d:\n%s", r.code, fail.LockLost, r.stdout)
	}
	t.Logf("stopped %.1fs after the take-over: %s", time.Since(took).Seconds(), last)

	// The intruder is gone (its Lease lapses); the rerun converges.
	if l, err := leases.Get(ctx, cluster.LockName, metav1.GetOptions{}); err == nil {
		empty := ""
		l.Spec.HolderIdentity = &empty
		_, _ = leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	again := idopipe(t, nil, releaseArgs(ns)...)
	if again.code != 0 || !strings.Contains(again.stdout, "2/2 Pods Ready") {
		t.Fatalf("rerun after the lost lock:\n%s", again)
	}
}
