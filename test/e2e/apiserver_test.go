package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/idopipe/idopipe/pkg/fail"
)

// TestAPIServerStopsMidApply stops kube-apiserver while a deploy applies a
// large manifest, starts it again, and checks that the rerun converges to
// the whole manifest with both Pods Ready. It may run in any position: it
// leaves the stack as it found it (StartAPIServer waits until the server,
// the node and the controllers work again, and a cleanup starts the server
// if the test ends while it is stopped), and its namespace is deleted when
// it ends.
func TestAPIServerStopsMidApply(t *testing.T) {
	ctx := context.Background()
	ref := pushedImage(t)
	var extra []string
	for i := range 300 {
		extra = append(extra, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: filler-%03d}\ndata: {i: \"%d\"}\n", i, i))
	}
	const ns = "apiserver-restart"
	manifest := fixtureWith(t, ns, nil, extra...)
	args := []string{"deploy", "--image", ref, "-n", ns, "--manifest", manifest, "--timeout", "60s",
		"--crds", filepath.Join(fixtures, "intents_crds_v1alpha1.yaml")}
	stopped := runUntil(t, args, func(out string) bool { return strings.Contains(out, "==> apply") }, func(*exec.Cmd) {
		// Registered after the namespace's cleanup (by runUntil), so it
		// runs before it: the namespace is deleted through a working API
		// server even when the test fails while the server is stopped.
		t.Cleanup(func() {
			if err := stack.Cluster.StartAPIServer(context.Background()); err != nil {
				t.Errorf("restart the API server for the tests that follow: %v", err)
			}
		})
		if err := stack.Cluster.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
	})
	code := stopped.code
	t.Logf("deploy with the API server stopped during apply: exit %d", code)
	if code != int(fail.Cluster) && code != 0 {
		t.Errorf("exit %d, want %d (cluster) or 0 if the apply finished first:\n%s", code, fail.Cluster, stopped.stdout)
	}
	restart := time.Now()
	if err := stack.Cluster.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("API server, node and controllers back in %.1fs", time.Since(restart).Seconds())
	r := idopipe(t, nil, args...)
	if r.code != 0 || !strings.Contains(r.stdout, "2/2 Pods Ready") {
		t.Fatalf("rerun after the API server came back:\n%s", r)
	}
	cms, err := stack.Cluster.Client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cms.Items); n < 303 { // 300 fillers, 2 planner ConfigMaps, the inventory
		t.Errorf("%d ConfigMaps after the rerun, want at least 303", n)
	}
	// And once more: nothing left to do.
	if again := idopipe(t, nil, args...); again.code != 0 || !strings.Contains(again.stdout, "0 created, 0 configured, 0 recreated, 0 pruned") {
		t.Errorf("third run:\n%s", again)
	}
}
