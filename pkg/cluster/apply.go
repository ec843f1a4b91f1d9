package cluster

import (
	"context"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
)

// Status is what an apply did to one object.
type Status string

// The statuses, as kubectl prints them.
const (
	Created    Status = "created"
	Configured Status = "configured"
	Unchanged  Status = "unchanged"
	Recreated  Status = "recreated"
	Pruned     Status = "pruned"
	DryRun     Status = "valid (dry run)"
)

// Applied is one object after apply.
type Applied struct {
	Ref    string // Kind/namespace/name
	Status Status
}

// ApplyOptions tune Apply.
type ApplyOptions struct {
	ForceConflicts bool // take over fields another manager owns
	NoRecreate     bool // refuse to delete and recreate Pods
	// NamespaceMissing: the target namespace does not exist yet, so
	// namespaced objects cannot be dry-run (Plan marks them Unchecked).
	NamespaceMissing bool
}

// statusOf compares the resourceVersion before (empty: the object did not
// exist) with the one the apply returned.
func statusOf(before, after string, dryRun bool) Status {
	switch {
	case dryRun:
		return DryRun
	case before == "":
		return Created
	case before == after:
		return Unchanged
	}
	return Configured
}

// EnsureNamespace creates ns unless it exists; created tells which.
func (c *Client) EnsureNamespace(ctx context.Context, ns string) (created bool, err error) {
	live, err := c.Core.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err == nil {
		if live.Status.Phase == "Terminating" {
			return false, fail.New(fail.Cluster, "wait until it is gone, or release into another namespace with -n",
				"namespace %s is being deleted", ns)
		}
		return false, nil
	}
	if !apierrors.IsNotFound(err) {
		return false, c.explain(ctx, err, "read namespace "+ns)
	}
	ac := corev1ac.Namespace(ns).WithLabels(map[string]string{"app.kubernetes.io/managed-by": FieldManager})
	if _, err := c.Core.CoreV1().Namespaces().Apply(ctx, ac, metav1.ApplyOptions{FieldManager: FieldManager}); err != nil {
		return false, c.explain(ctx, err, "create namespace "+ns)
	}
	return true, nil
}

// NamespaceMissing tells whether ns does not exist (or is being deleted).
func (c *Client) NamespaceMissing(ctx context.Context, ns string) (bool, error) {
	live, err := c.Core.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, c.explain(ctx, err, "read namespace "+ns)
	}
	return live.Status.Phase == "Terminating", nil
}

// DeleteNamespace removes a namespace this run created, to undo a release
// that failed validation before anything else was written.
func (c *Client) DeleteNamespace(ctx context.Context, ns string) error {
	err := c.Core.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return c.explain(ctx, err, "delete namespace "+ns)
	}
	return nil
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// WaitEstablished waits until every named CRD reports Established, then
// refreshes the discovery cache so that their kinds resolve.
func (c *Client) WaitEstablished(ctx context.Context, names []string, timeout time.Duration) error {
	for _, n := range names {
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
			u, err := c.Dynamic.Resource(crdGVR).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false, nil //nolint:nilerr // keep polling until the deadline
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, cond := range conds {
				m, _ := cond.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fail.New(fail.Cluster, "check the CRD with kubectl describe crd "+n, "CustomResourceDefinition %s was not Established within %s", n, timeout)
		}
	}
	c.Mapper.Reset()
	return nil
}

// explain classifies an API error that is about the cluster, not an object.
func (c *Client) explain(ctx context.Context, err error, what string) error {
	if lost, ok := lockLost(err); ok {
		return lost
	}
	if isCanceled(ctx, err) {
		return context.Canceled
	}
	switch {
	case apierrors.IsForbidden(err):
		return fail.Wrap(fail.Cluster, err, "grant the identity in the kubeconfig that permission", "not allowed to %s", what)
	case apierrors.IsUnauthorized(err):
		return fail.Wrap(fail.Cluster, err, "refresh the credentials in the kubeconfig", "the API server rejected the kubeconfig's credentials (%s)", what)
	}
	return fail.Wrap(fail.Cluster, err, "check that the API server at "+c.Host+" is up", "cannot %s", what)
}

// explainObject names the object, the field and the server's message.
func (c *Client) explainObject(ctx context.Context, err error, obj manifest.Object, ref string, dryRun bool) error {
	if lost, ok := lockLost(err); ok {
		return lost
	}
	if isCanceled(ctx, err) {
		return context.Canceled
	}
	verb := "apply"
	if dryRun {
		verb = "validate"
	}
	if apierrors.IsConflict(err) {
		return fail.Wrap(fail.Cluster, err, "pass --force-conflicts to take the fields over", "%s conflicts with another field manager", ref)
	}
	if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
		return fail.WithCause(fail.Manifest, err, "fix "+obj.Source, "the API server rejected %s: %s", ref, serverCauses(err))
	}
	return c.explain(ctx, err, verb+" "+ref)
}

// serverCauses is the API server's verdict in one short line: each field
// and its message (the first line, at most 200 characters), not the whole
// object dump some messages carry.
func serverCauses(err error) string {
	var causes []string
	if se, ok := err.(apierrors.APIStatus); ok && se.Status().Details != nil {
		for _, c := range se.Status().Details.Causes {
			causes = append(causes, shorten(c.Field+": "+c.Message))
		}
	}
	if len(causes) == 0 {
		return shorten(err.Error())
	}
	return strings.Join(causes, "; ")
}

func shorten(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
