package cluster

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/idopipe/idopipe/pkg/manifest"
)

// ObjectState is an object's rollout status as kstatus computes it
// (Current, InProgress, Failed, ...), with the Pods it runs when it is a
// workload.
type ObjectState struct {
	Ref     string   `json:"ref"`
	Status  string   `json:"status"`
	Message string   `json:"message,omitempty"`
	Pods    []string `json:"pods,omitempty"` // the workload's unready Pods, with their reasons

	selector string
	podsOf   []PodState
}

func (s ObjectState) String() string {
	out := s.Ref + " " + s.Status
	if s.Message != "" {
		out += ": " + s.Message
	}
	return out
}

// Current reports whether the object has reached its desired state.
func (s ObjectState) Current() bool { return s.Status == string(status.CurrentStatus) }

// Watched reports whether Wait follows obj by kstatus: every kind with a
// status that can be in progress (workloads, Jobs, claims, custom
// resources), not configuration (ConfigMaps, Secrets, RBAC, Services, ...)
// that is current once written. Bare Pods are followed by Wait's own Pod
// diagnosis.
func Watched(obj manifest.Object) bool {
	gvk := obj.GroupVersionKind()
	switch gvk.Group {
	case "":
		return gvk.Kind == "PersistentVolumeClaim" || gvk.Kind == "ReplicationController"
	case "apps", "batch", "policy":
		return gvk.Kind != "ControllerRevision" && gvk.Kind != "CronJob"
	case "rbac.authorization.k8s.io", "apiextensions.k8s.io", "admissionregistration.k8s.io",
		"scheduling.k8s.io", "storage.k8s.io", "networking.k8s.io", "coordination.k8s.io", "discovery.k8s.io", "node.k8s.io":
		return false
	}
	return true
}

// objectState reads obj and computes its status; for a workload it also
// reads its Pods (by the workload's selector) so that Wait can tell why it
// is not current.
func (c *Client) objectState(ctx context.Context, obj manifest.Object) (ObjectState, error) {
	r, ref, err := c.resource(obj)
	if err != nil {
		return ObjectState{}, err
	}
	s := ObjectState{Ref: ref}
	live, err := r.Get(ctx, obj.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		s.Status, s.Message = string(status.NotFoundStatus), "does not exist"
		return s, nil
	case err != nil:
		return s, c.explain(ctx, err, "read "+ref)
	}
	res, err := status.Compute(live)
	if err != nil {
		s.Status, s.Message = string(status.UnknownStatus), err.Error()
	} else {
		s.Status, s.Message = string(res.Status), res.Message
	}
	if s.Current() {
		return s, nil
	}
	if sel := podSelector(live); sel != "" {
		pods, err := c.Core.CoreV1().Pods(obj.GetNamespace()).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return s, c.explain(ctx, err, "list the Pods of "+ref)
		}
		for i := range pods.Items {
			ps := stateOf(&pods.Items[i])
			s.podsOf = append(s.podsOf, ps)
			if !ps.Ready && pods.Items[i].Status.Phase != corev1.PodSucceeded {
				s.Pods = append(s.Pods, ps.String())
			}
		}
	}
	return s, nil
}

// podSelector is a workload's label selector in list-option form ("" for
// other kinds).
func podSelector(u *unstructured.Unstructured) string {
	m, ok, _ := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
	if !ok || len(m) == 0 {
		if u.GetKind() == "Job" {
			if uid := string(u.GetUID()); uid != "" {
				return "batch.kubernetes.io/controller-uid=" + uid
			}
		}
		return ""
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

// rolloutFailure is the error for an object kstatus says has failed (a
// Deployment past its progress deadline, a failed Job).
func rolloutFailure(ns string, s ObjectState) (Cause, bool) {
	if s.Status != string(status.FailedStatus) {
		return Cause{}, false
	}
	what := s.Message
	if len(s.Pods) > 0 {
		what += fmt.Sprintf(" (Pods: %s)", strings.Join(s.Pods, " | "))
	}
	return Cause{Kind: "rollout-failed", Fatal: true, What: what,
		Fix: fmt.Sprintf("read the events of %s and its Pods (kubectl describe -n %s)", s.Ref, ns)}, true
}
