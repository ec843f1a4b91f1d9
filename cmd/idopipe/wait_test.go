package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/testenv"
)

// TestWaitDiagnoses puts the planner Pod into the states a kubelet reports
// (kwok plays the kubelet, see testenv.FaultLabel) or makes it
// unschedulable, and checks that the wait stage names the cause and the fix:
// at once for causes that waiting cannot fix, at the deadline otherwise.
func TestWaitDiagnoses(t *testing.T) {
	ref := pushedImage(t)
	fault := func(reason, message string) map[string]string {
		return map[string]string{"  labels:\n    name: planner\n": "  labels:\n    name: planner\n    " + testenv.FaultLabel + ": " + reason +
			"\n  annotations:\n    " + testenv.FaultMessage + ": \"" + message + "\"\n"}
	}
	cases := []struct {
		name     string
		replace  map[string]string
		timeout  string
		want     []string
		deadline bool // fails only at the deadline
	}{
		{"pull unauthorized", fault("ErrImagePull", "failed to pull and unpack image: 401 Unauthorized"), "60s",
			[]string{"Pod wait-0/planner: pull-unauthorized", "--as-cluster"}, false},
		{"image not found", fault("ImagePullBackOff", "rpc error: manifest unknown"), "60s",
			[]string{"image-not-found", "push the image"}, false},
		{"no matching platform", fault("ErrImagePull", "no matching manifest for linux/arm64 in the manifest list entries"), "60s",
			[]string{"no-matching-platform", "--platforms-from-cluster"}, false},
		{"crash loop", fault("CrashLoopBackOff", "back-off 10s restarting failed container=planner"), "60s",
			[]string{"crash-loop", "restarting failed container"}, false},
		{"unschedulable", map[string]string{"  serviceAccountName: planner-service-account\n": "  serviceAccountName: planner-service-account\n  nodeSelector: {disktype: nvme}\n"}, "60s",
			[]string{"unschedulable", "didn't match Pod's node affinity/selector", "node-role.kubernetes.io/control-plane"}, false},
		{"rate limited waits until the deadline", fault("ErrImagePull", "429 Too Many Requests"), "3s",
			[]string{"not Ready after 3s", "Pod planner Pending", "429 Too Many Requests"}, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := "wait-" + itoa(i)
			start := time.Now()
			r := idopipe(t, nil, "deploy", "--image", ref, "-n", ns, "--manifest", upstreamWith(t, tc.replace),
				"--crds", filepath.Join(fixtures, "intents_crds_v1alpha1.yaml"), "--timeout", tc.timeout)
			took := time.Since(start)
			if r.code != int(fail.NotReady) {
				t.Fatalf("exit %d, want %d:\n%s", r.code, fail.NotReady, r)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			last := lines[len(lines)-1]
			for _, w := range tc.want {
				if !strings.Contains(last, w) {
					t.Errorf("error %q lacks %q", last, w)
				}
			}
			// Not a timing assertion: a fatal cause must not have waited out
			// the 60s deadline.
			if !tc.deadline && strings.Contains(last, "not Ready after") {
				t.Errorf("a non-transient cause waited for the deadline (%s)", took)
			}
		})
	}
}

// pushedImage releases the fixture once (namespace wait-setup) and returns
// the pushed reference with its digest.
func pushedImage(t *testing.T) string {
	t.Helper()
	r := idopipe(t, nil, releaseArgs("wait-setup", "-o", "json")...)
	if r.code != 0 {
		t.Fatalf("release:\n%s", r)
	}
	return parseRelease(t, r).Result.Ref
}
