package cluster

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TeardownOptions say how far teardown goes.
type TeardownOptions struct {
	ClusterScoped bool // also delete the cluster-scoped objects idopipe applied (ClusterRole, ...)
	Namespace     bool // also delete the namespace itself
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
	switch {
	case o.Namespace:
		if err := c.DeleteNamespace(ctx, ns); err != nil {
			return done, err
		}
		done = append(done, Applied{Ref: "Namespace/" + ns, Status: Pruned})
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
	return done, nil
}
