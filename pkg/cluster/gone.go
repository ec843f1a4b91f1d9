package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/idopipe/idopipe/pkg/fail"
)

// Waits that cannot succeed, found apart from the Pods' own states: a bare
// Pod that is gone (nothing recreates a bare Pod), and a node whose kubelet
// stopped reporting (its Pods show ContainerCreating or stay Pending with
// nothing to tell why, until the node controller marks the node NotReady
// 40 s or more later).

// NodeLeaseNamespace holds the kubelets' heartbeat Leases.
const NodeLeaseNamespace = "kube-node-lease"

// deletedPod explains a bare Pod of the manifest that no longer exists, or
// is being deleted, during the wait: who deleted it when its events say,
// and that a rerun creates it again. nil while it is there.
func (c *Client) deletedPod(ctx context.Context, ns string, s PodState) error {
	gone := s.pod == nil
	if !gone && s.pod.DeletionTimestamp == nil {
		return nil
	}
	what := "was deleted during the wait"
	if !gone {
		what = fmt.Sprintf("is being deleted (since %s)", s.pod.DeletionTimestamp.Format(time.TimeOnly))
	}
	evs, _ := c.podEvents(ctx, ns, s.Name)
	return fail.New(fail.NotReady,
		"a bare Pod is not recreated by anything: rerun the release (or deploy) to create it again, or pass --rollback-on-failure",
		"Pod %s/%s %s: %s", ns, s.Name, what, whoDeleted(evs))
}

// whoDeleted says what the Pod's events tell of its end.
func whoDeleted(evs []corev1.Event) string {
	for i := len(evs) - 1; i >= 0; i-- {
		e := evs[i]
		msg := strings.TrimSpace(e.Message)
		switch e.Reason {
		case "Evicted":
			return "the kubelet of its node evicted it (" + msg + ")"
		case "Preempted", "Preempting":
			return "the scheduler preempted it for a Pod of higher priority (" + msg + ")"
		case "TaintManagerEviction":
			return "the taint manager evicted it from its node (" + msg + ")"
		case "NodeNotReady":
			return "its node went NotReady (" + msg + ")"
		}
	}
	if slices.ContainsFunc(evs, func(e corev1.Event) bool { return e.Reason == "Killing" }) {
		return "its containers were stopped on request; the events do not say by whom (kubectl delete, an eviction, a node drain: the API server's audit log does)"
	}
	return "the events do not say by whom (kubectl delete, an eviction, a node drain: the API server's audit log does)"
}

// silentNodes names the nodes among nodes whose kubelet has stopped
// renewing its heartbeat Lease: each with a fatal cause that says when it
// last did. Nodes whose Lease cannot be read are left out (a diagnosis is
// best effort).
func (c *Client) silentNodes(ctx context.Context, nodes []string) map[string]Cause {
	out := map[string]Cause{}
	for _, n := range nodes {
		lease, err := c.Core.CoordinationV1().Leases(NodeLeaseNamespace).Get(ctx, n, metav1.GetOptions{})
		if err != nil || lease.Spec.RenewTime == nil {
			continue
		}
		duration := 40 * time.Second // the kubelet's default nodeLeaseDurationSeconds
		if d := lease.Spec.LeaseDurationSeconds; d != nil && *d > 0 {
			duration = time.Duration(*d) * time.Second
		}
		if age, stale := heartbeatStale(lease.Spec.RenewTime.Time, duration, time.Now()); stale {
			out[n] = Cause{
				Kind:  "kubelet-silent",
				Fatal: true,
				What: fmt.Sprintf("the kubelet of node %s has not renewed its heartbeat for %s (last at %s; it renews every %s): it is not running, is stopped, or cannot reach the API server",
					n, age.Round(time.Second), lease.Spec.RenewTime.Local().Format(time.TimeOnly), (duration / 4).Round(time.Second)),
				Fix: fmt.Sprintf("check the kubelet on node %s (is it running? its log; can it reach the API server?), or cordon the node and release again", n),
			}
		}
	}
	return out
}

// heartbeatStale tells whether a kubelet that renews its Lease every
// quarter of its duration (as kubelets do) has missed renewals: more than
// half a renewal period late. The node controller waits its grace period
// (40 s and more) before it marks the node NotReady.
func heartbeatStale(renewed time.Time, duration time.Duration, now time.Time) (time.Duration, bool) {
	every := duration / 4
	age := now.Sub(renewed)
	return age, age > every+every/2
}

// nodesOf are the nodes the unready Pods among states are bound to.
func nodesOf(states []PodState) []string {
	var out []string
	for _, s := range states {
		if !s.Ready && s.Node != "" && !slices.Contains(out, s.Node) {
			out = append(out, s.Node)
		}
	}
	return out
}
