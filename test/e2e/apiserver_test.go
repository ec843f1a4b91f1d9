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

// TestAPIServerStopsMidApply kills the API server a deploy talks to while
// it applies a large manifest, starts it again, and checks that the rerun
// converges to the whole manifest with both Pods Ready. The server is a
// second kube-apiserver of the stack's cluster (same etcd, certificates and
// flags), the only one the deploy's kubeconfig names: the first keeps
// serving the node, the controllers and the tests running beside this one.
func TestAPIServerStopsMidApply(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	api, err := stack.Cluster.StartSecondAPIServer(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer api.Stop()
	ref := pushedImage(t)
	var extra []string
	for i := range 300 {
		extra = append(extra, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: filler-%03d}\ndata: {i: \"%d\"}\n", i, i))
	}
	const ns = "apiserver-restart"
	manifest := fixtureWith(t, ns, nil, extra...)
	args := []string{"deploy", "--image", ref, "-n", ns, "--manifest", manifest, "--timeout", "60s",
		"--crds", filepath.Join(fixtures, "intents_crds_v1alpha1.yaml"), "--kubeconfig", api.Kubeconfig}
	stopped := runUntil(t, args, func(out string) bool { return strings.Contains(out, "==> apply") }, func(*exec.Cmd) {
		api.Kill()
	})
	code := stopped.code
	t.Logf("deploy with its API server killed during apply: exit %d", code)
	if code != int(fail.Cluster) && code != 0 {
		t.Errorf("exit %d, want %d (cluster) or 0 if the apply finished first:\n%s", code, fail.Cluster, stopped.stdout)
	}
	restart := time.Now()
	if err := api.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("API server back in %.1fs", time.Since(restart).Seconds())
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
