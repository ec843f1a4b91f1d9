package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/idopipe/idopipe/pkg/fail"
)

// TeardownOptions say how far teardown goes.
type TeardownOptions struct {
	ClusterScoped bool // also delete the cluster-scoped objects idopipe applied (ClusterRole, ...)
	Namespace     bool // also delete the namespace itself
	// Wait bounds the wait until what was deleted is gone (Pods stopped,
	// the namespace finalized); 0 returns right after the deletions.
	Wait time.Duration
}

// Teardown deletes what idopipe applied in ns, as its inventory lists it:
// the namespaced objects; cluster-scoped ones and the namespace only when
// asked. Objects idopipe did not apply are never touched.
func (c *Client) Teardown(ctx context.Context, ns string, o TeardownOptions, announce func(string)) ([]Applied, error) {
	entries, err := c.Inventory(ctx, ns)
	if err != nil {
		return nil, err
	}
	var keep []Entry
	plan, err := c.PrunePlan(ctx, entries, nil)
	if err != nil {
		return nil, err
	}
	var del []Change
	for _, ch := range plan {
		if ch.Object.GetNamespace() == "" && !o.ClusterScoped {
			keep = append(keep, EntryOf(ch.Object))
			continue
		}
		del = append(del, ch)
	}
	done, err := c.Execute(ctx, del, ApplyOptions{}, announce)
	if err != nil {
		return done, err
	}
	gone := del
	switch {
	case o.Namespace:
		if err := c.DeleteNamespace(ctx, ns); err != nil {
			return done, err
		}
		done = append(done, Applied{Ref: "Namespace/" + ns, Status: Pruned})
		return done, c.waitGone(ctx, nil, ns, o.Wait, announce)
	case len(keep) > 0:
		// Remember the cluster-scoped objects for a later --cluster-scoped.
		if err := c.WriteInventory(ctx, ns, keep); err != nil {
			return done, err
		}
	default:
		if err := c.Core.CoreV1().ConfigMaps(ns).Delete(ctx, InventoryName, metav1.DeleteOptions{}); err != nil {
			return done, c.explain(ctx, err, "delete ConfigMap "+ns+"/"+InventoryName)
		}
	}
	return done, c.waitGone(ctx, gone, "", o.Wait, announce)
}

// waitGone polls until every deleted object (and namespace ns, when not
// "") is gone, at most timeout, announcing what is left every few seconds.
func (c *Client) waitGone(ctx context.Context, deleted []Change, ns string, timeout time.Duration, announce func(string)) error {
	if timeout <= 0 {
		return nil
	}
	deadline := time.Now().Add(timeout)
	lastSaid := time.Now()
	for {
		var left []string
		if ns != "" {
			n, err := c.Core.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			switch {
			case err == nil:
				left = append(left, fmt.Sprintf("Namespace/%s (%s)", ns, n.Status.Phase))
			case !apierrors.IsNotFound(err):
				return c.explain(ctx, err, "read namespace "+ns)
			}
		}
		for _, ch := range deleted {
			r, ref, err := c.resource(ch.Object)
			if err != nil {
				return err
			}
			if _, err := r.Get(ctx, ch.Object.GetName(), metav1.GetOptions{}); err == nil {
				left = append(left, ref)
			} else if !apierrors.IsNotFound(err) {
				return c.explain(ctx, err, "read "+ref)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fail.New(fail.Cluster, "look for finalizers and stuck Pods (kubectl get -o yaml), or pass a longer --timeout",
				"still there %s after the deletion: %s", timeout, strings.Join(left, ", "))
		}
		if time.Since(lastSaid) >= 3*time.Second && announce != nil {
			announce(fmt.Sprintf("waiting for %d to go: %s", len(left), strings.Join(left, ", ")))
			lastSaid = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
