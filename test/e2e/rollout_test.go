package e2e

import (
	"strings"
	"testing"

	"github.com/idopipe/idopipe/pkg/fail"
)

// A Deployment shaped like the upstream IDO example workload (one
// container, labels the planner's intents select on), running the mongo
// stand-in from the mirror so that the real node runs it.
const exampleDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: function-deployment
  labels: {app: function}
spec:
  replicas: 2
  selector:
    matchLabels: {app: function}
  template:
    metadata:
      labels: {app: function}
    spec:
      containers:
        - name: function
          image: mongo:6
          ports: [{containerPort: 27017}]
          readinessProbe: {tcpSocket: {port: 27017}, periodSeconds: 1}
`

// TestWaitRollouts: the wait stage follows a Deployment until it is rolled
// out (kstatus Current) beside the bare Pods, and ends at once, naming the
// Deployment and its Pods, when its rollout cannot finish.
func TestWaitRollouts(t *testing.T) {
	t.Parallel()
	ref := pushedImage(t)
	r := idopipe(t, nil, "deploy", "--image", ref, "-n", "rollout-ok", "--manifest", fixtureWith(t, "rollout-ok", nil, exampleDeployment), "--timeout", "90s")
	if r.code != 0 || !strings.Contains(r.stdout, "Deployment/rollout-ok/function-deployment Current") ||
		!strings.Contains(r.stdout, "2/2 Pods Ready in rollout-ok, 1/1 objects current") {
		t.Fatalf("deploy with a Deployment:\n%s", r)
	}
	// Its Pods never become ready (the probe's port is closed), and the
	// Deployment's progress deadline passes: kstatus says Failed.
	stuck := strings.Replace(exampleDeployment, "port: 27017}, periodSeconds", "port: 4444}, periodSeconds", 1)
	stuck = strings.Replace(stuck, "  replicas: 2\n", "  replicas: 1\n  progressDeadlineSeconds: 20\n", 1)
	r = idopipe(t, nil, "deploy", "--image", ref, "-n", "rollout-stuck", "--manifest", fixtureWith(t, "rollout-stuck", nil, stuck), "--timeout", "90s")
	last := lastLine(r.stderr)
	if r.code != int(fail.NotReady) || !strings.Contains(last, "Deployment/rollout-stuck/function-deployment: rollout-failed") ||
		!strings.Contains(last, "running but not ready") || strings.Contains(last, "not Ready after") {
		t.Fatalf("deploy with a rollout that cannot finish:\n%s", r)
	}
}
