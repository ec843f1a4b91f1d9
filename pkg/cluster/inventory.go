package cluster

import (
	"context"
	"encoding/json"
	"slices"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
)

// InventoryName is the ConfigMap, in the release's namespace, that lists
// the objects idopipe applied there: what a later release prunes and what
// teardown deletes. Nothing absent from it is ever deleted.
const InventoryName = "idopipe-inventory"

const inventoryKey = "objects.json"

// Entry names one applied object.
type Entry struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
}

func (e Entry) key() string { return e.APIVersion + "/" + e.Kind + "/" + e.Namespace + "/" + e.Name }

// EntryOf names obj.
func EntryOf(obj manifest.Object) Entry {
	return Entry{APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// object is a stub of the entry, enough to look it up and delete it.
func (e Entry) object() manifest.Object {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(e.APIVersion)
	u.SetKind(e.Kind)
	u.SetNamespace(e.Namespace)
	u.SetName(e.Name)
	return manifest.Object{Unstructured: u, Source: InventoryName}
}

// Inventory reads the namespace's inventory; none is an empty list.
func (c *Client) Inventory(ctx context.Context, ns string) ([]Entry, error) {
	cm, err := c.Core.CoreV1().ConfigMaps(ns).Get(ctx, InventoryName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, c.explain(ctx, err, "read ConfigMap "+ns+"/"+InventoryName)
	}
	var entries []Entry
	if err := json.Unmarshal([]byte(cm.Data[inventoryKey]), &entries); err != nil {
		return nil, fail.WithCause(fail.Cluster, err, "delete it; the next release writes it anew (nothing will be pruned once)",
			"ConfigMap %s/%s is not an idopipe inventory", ns, InventoryName)
	}
	return entries, nil
}

// WriteInventory records entries as the namespace's inventory.
func (c *Client) WriteInventory(ctx context.Context, ns string, entries []Entry) error {
	sort.Slice(entries, func(i, j int) bool { return entries[i].key() < entries[j].key() })
	entries = slices.CompactFunc(entries, func(a, b Entry) bool { return a.key() == b.key() })
	b, err := json.MarshalIndent(entries, "", " ")
	if err != nil {
		return fail.Wrap(fail.Internal, err, "", "cannot encode the inventory")
	}
	ac := corev1ac.ConfigMap(InventoryName, ns).
		WithLabels(map[string]string{"app.kubernetes.io/managed-by": FieldManager}).
		WithData(map[string]string{inventoryKey: string(b)})
	if _, err := c.Core.CoreV1().ConfigMaps(ns).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return c.explain(ctx, err, "write ConfigMap "+ns+"/"+InventoryName)
	}
	return nil
}

// PrunePlan returns a Delete change for every object of the old inventory
// that objs no longer contain, still exists, and is still managed by idopipe
// (an object another tool took over is left alone).
func (c *Client) PrunePlan(ctx context.Context, old []Entry, objs []manifest.Object) ([]Change, error) {
	keep := map[string]bool{}
	for _, o := range objs {
		keep[EntryOf(o).key()] = true
	}
	var out []Change
	for i := len(old) - 1; i >= 0; i-- {
		e := old[i]
		if keep[e.key()] {
			continue
		}
		obj := e.object()
		r, ref, err := c.resource(obj)
		if err != nil {
			continue // the kind is gone (CRD removed): nothing to prune
		}
		live, err := r.Get(ctx, e.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, c.explain(ctx, err, "read "+ref)
		}
		if !managedBy(live, FieldManager) {
			continue
		}
		out = append(out, Change{Object: obj, Ref: ref, Action: Delete, Live: live})
	}
	return out, nil
}

func managedBy(u *unstructured.Unstructured, manager string) bool {
	for _, f := range u.GetManagedFields() {
		if f.Manager == manager {
			return true
		}
	}
	return false
}
