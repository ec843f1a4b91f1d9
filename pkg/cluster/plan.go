package cluster

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/pmezard/go-difflib/difflib"
	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
)

// Action is what applying one object will do.
type Action string

// The actions of a plan.
const (
	Create    Action = "create"
	Update    Action = "update"
	NoChange  Action = "unchanged"
	Recreate  Action = "recreate" // a Pod whose spec changed: delete, wait, create
	Delete    Action = "delete"   // pruned: applied by an earlier release, gone from the manifest
	Unchecked Action = "create (not validated: namespace does not exist yet)"
	// Deferred: admission needs another object of the manifest to exist
	// first (a Pod's ServiceAccount); validated once that one is created.
	Deferred Action = "create (validated after what it needs is created)"
)

// Change is the plan for one object: its live state, what the server's dry
// run says it will become, and the action.
type Change struct {
	Object  manifest.Object
	Ref     string
	Action  Action
	Why     string // why a Pod is recreated
	Live    *unstructured.Unstructured
	Desired *unstructured.Unstructured
	Needs   string // for Deferred: the object admission needs first ("ServiceAccount/ns/name")
	Done    bool   // applied already (a dependency created before the others were validated)
}

// Plan validates every object by a server-side dry run and decides per
// object: create, update, unchanged, or (for a Pod whose spec changed, or
// that mounts a ConfigMap that changes) recreate. It writes nothing.
func (c *Client) Plan(ctx context.Context, objs []manifest.Object, o ApplyOptions) ([]Change, error) {
	plan := make([]Change, len(objs))
	err := forEach(ctx, len(objs), func(ctx context.Context, i int) (err error) {
		plan[i], err = c.planOne(ctx, objs[i], o)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := c.checkNeeds(ctx, plan, o); err != nil {
		return nil, err
	}
	// Config is read at start: a Pod mounting a changed ConfigMap restarts.
	changed := map[string]bool{}
	for _, ch := range plan {
		if ch.Object.GetKind() == "ConfigMap" && ch.Action == Update {
			changed[ch.Object.GetNamespace()+"/"+ch.Object.GetName()] = true
		}
	}
	for i, ch := range plan {
		if ch.Object.GetKind() != "Pod" || ch.Action == Create || ch.Action == Recreate || ch.Action == Unchecked || ch.Action == Deferred {
			continue
		}
		for _, cm := range configMapsOf(ch.Object.Unstructured) {
			if changed[ch.Object.GetNamespace()+"/"+cm] {
				plan[i].Action, plan[i].Why = Recreate, "ConfigMap "+cm+" changes"
			}
		}
	}
	return plan, nil
}

func (c *Client) resource(obj manifest.Object) (dynamic.ResourceInterface, string, error) {
	gvk := obj.GroupVersionKind()
	m, err := c.mapping(gvk)
	if err != nil {
		return nil, "", err
	}
	ri := c.Dynamic.Resource(m.Resource)
	if ns := obj.GetNamespace(); ns != "" {
		return ri.Namespace(ns), gvk.Kind + "/" + ns + "/" + obj.GetName(), nil
	}
	return ri, gvk.Kind + "/" + obj.GetName(), nil
}

func (c *Client) planOne(ctx context.Context, obj manifest.Object, o ApplyOptions) (Change, error) {
	r, ref, err := c.resource(obj)
	if err != nil {
		return Change{}, err
	}
	ch := Change{Object: obj, Ref: ref}
	live, err := r.Get(ctx, obj.GetName(), metav1.GetOptions{})
	switch {
	case err == nil:
		ch.Live = live
	case apierrors.IsNotFound(err):
	default:
		return ch, c.explain(ctx, err, "read "+ref)
	}
	if ns := obj.GetNamespace(); ns != "" && o.NamespaceMissing {
		ch.Action = Unchecked
		return ch, nil
	}
	desired, err := r.Apply(ctx, obj.GetName(), obj.Unstructured, metav1.ApplyOptions{
		FieldManager: FieldManager, Force: o.ForceConflicts, DryRun: []string{metav1.DryRunAll},
	})
	if err != nil {
		if obj.GetKind() == "Pod" && ch.Live != nil && apierrors.IsInvalid(err) && strings.Contains(err.Error(), "may not change fields") {
			ch.Action, ch.Why = Recreate, "its spec changes and Pods are immutable"
			return ch, nil
		}
		if needs := missingDependency(obj, err); needs != "" && ch.Live == nil {
			ch.Action, ch.Needs, ch.Why = Deferred, needs, "admission needs "+needs
			return ch, nil
		}
		return ch, c.explainObject(ctx, err, obj, ref, true)
	}
	ch.Desired = desired
	switch {
	case ch.Live == nil:
		ch.Action = Create
	case reflect.DeepEqual(comparable(ch.Live), comparable(desired)):
		ch.Action = NoChange
	case obj.GetKind() == "Pod" && !reflect.DeepEqual(ch.Live.Object["spec"], desired.Object["spec"]):
		ch.Action, ch.Why = Recreate, "its spec changes and Pods are immutable"
	default:
		ch.Action = Update
	}
	return ch, nil
}

// comparable drops what the server maintains, so that live and desired
// compare equal when applying would change nothing.
func comparable(u *unstructured.Unstructured) map[string]any {
	m := u.DeepCopy().Object
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		for _, k := range []string{"managedFields", "resourceVersion", "generation", "creationTimestamp", "uid"} {
			delete(md, k)
		}
	}
	return m
}

func configMapsOf(pod *unstructured.Unstructured) []string {
	var out []string
	vols, _, _ := unstructured.NestedSlice(pod.Object, "spec", "volumes")
	for _, v := range vols {
		if n, ok, _ := unstructured.NestedString(v.(map[string]any), "configMap", "name"); ok {
			out = append(out, n)
		}
	}
	for _, list := range []string{"containers", "initContainers"} {
		cs, _, _ := unstructured.NestedSlice(pod.Object, "spec", list)
		for _, c := range cs {
			froms, _, _ := unstructured.NestedSlice(c.(map[string]any), "envFrom")
			for _, f := range froms {
				if n, ok, _ := unstructured.NestedString(f.(map[string]any), "configMapRef", "name"); ok {
					out = append(out, n)
				}
			}
			envs, _, _ := unstructured.NestedSlice(c.(map[string]any), "env")
			for _, e := range envs {
				if n, ok, _ := unstructured.NestedString(e.(map[string]any), "valueFrom", "configMapKeyRef", "name"); ok {
					out = append(out, n)
				}
			}
		}
	}
	return out
}

// Execute carries out a plan, kind after kind in plan order and the objects
// of one kind at once (up to parallel): applies creates and updates, deletes
// and recreates Pods (announcing each), and leaves unchanged objects alone:
// a plan with nothing to do writes nothing. After a failure it starts no
// more writes and returns what was applied.
func (c *Client) Execute(ctx context.Context, plan []Change, o ApplyOptions, announce func(string)) ([]Applied, error) {
	if o.NoRecreate {
		var pods []string
		for _, ch := range plan {
			if ch.Action == Recreate {
				pods = append(pods, ch.Ref+" ("+ch.Why+")")
			}
		}
		if len(pods) > 0 {
			return nil, fail.New(fail.Cluster, "drop --no-recreate to let idopipe delete and recreate them",
				"these Pods must be recreated to change: %s", strings.Join(pods, ", "))
		}
	}
	out := make([]Applied, len(plan))
	// Objects of one kind go to the server together, kinds one after
	// another in plan order (a Pod after its ServiceAccount and ConfigMaps).
	for start := 0; start < len(plan); {
		end := start + 1
		for end < len(plan) && plan[end].Object.GroupVersionKind() == plan[start].Object.GroupVersionKind() {
			end++
		}
		group := plan[start:end]
		err := forEach(ctx, len(group), func(ctx context.Context, i int) (err error) {
			out[start+i], err = c.executeOne(ctx, group[i], o, announce)
			return err
		})
		if err != nil {
			return compact(out[:end]), err
		}
		start = end
	}
	return compact(out), nil
}

// parallel is how many objects are planned or applied at once.
const parallel = 8

// forEach runs fn for 0…n-1, parallel at a time. After a failure it starts
// no more and cancels those running; it returns the first failure in index
// order, not counting the runs cancelled because of it.
func forEach(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	errs := make([]error, n)
	for i := range n {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			errs[i] = fn(gctx, i)
			return errs[i]
		})
	}
	_ = g.Wait()
	return fail.FirstFailure(ctx, errs)
}

// compact drops the entries of objects that were not applied.
func compact(out []Applied) []Applied {
	kept := out[:0]
	for _, a := range out {
		if a.Ref != "" {
			kept = append(kept, a)
		}
	}
	return kept
}

func (c *Client) executeOne(ctx context.Context, ch Change, o ApplyOptions, announce func(string)) (Applied, error) {
	if ch.Done {
		return Applied{}, nil // written before the others were validated (CreateNeeded)
	}
	r, _, err := c.resource(ch.Object)
	if err != nil {
		return Applied{}, err
	}
	status := Unchanged
	switch ch.Action {
	case NoChange:
	case Recreate:
		announce(fmt.Sprintf("recreating %s: %s", ch.Ref, ch.Why))
		if err := c.deleteAndWait(ctx, r, ch.Ref, ch.Object.GetName()); err != nil {
			return Applied{}, err
		}
		if _, err := r.Apply(ctx, ch.Object.GetName(), ch.Object.Unstructured, metav1.ApplyOptions{FieldManager: FieldManager, Force: o.ForceConflicts}); err != nil {
			return Applied{}, c.explainObject(ctx, err, ch.Object, ch.Ref, false)
		}
		status = Recreated
	case Delete:
		if err := r.Delete(ctx, ch.Object.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return Applied{}, c.explain(ctx, err, "delete "+ch.Ref)
		}
		status = Pruned
	default:
		got, err := r.Apply(ctx, ch.Object.GetName(), ch.Object.Unstructured, metav1.ApplyOptions{FieldManager: FieldManager, Force: o.ForceConflicts})
		if err != nil {
			return Applied{}, c.explainObject(ctx, err, ch.Object, ch.Ref, false)
		}
		status = Created
		if ch.Live != nil {
			status = statusOf(ch.Live.GetResourceVersion(), got.GetResourceVersion(), false)
		}
	}
	return Applied{Ref: ch.Ref, Status: status}, nil
}

func (c *Client) deleteAndWait(ctx context.Context, r dynamic.ResourceInterface, ref, name string) error {
	if err := r.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return c.explain(ctx, err, "delete "+ref)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := r.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fail.New(fail.Cluster, "check the Pod's finalizers and its node", "%s was not gone 2 minutes after its deletion", ref)
	}
	return nil
}

// Diff shows what the change does, as a unified diff of YAML; Secret data
// is masked.
func (ch Change) Diff() string {
	var before, after string
	switch {
	case ch.Desired != nil:
		if ch.Live != nil {
			before = toYAML(ch.Live)
		}
		after = toYAML(ch.Desired)
	case ch.Action == Delete:
		before = toYAML(ch.Live)
	case ch.Live != nil:
		// No dry-run result (the server refuses in-place changes to a Pod):
		// compare the fields the manifest sets with their live values.
		shape := ch.Object.Object
		before = toYAML(&unstructured.Unstructured{Object: project(ch.Live.Object, shape).(map[string]any)})
		after = toYAML(ch.Object.Unstructured)
	default:
		after = toYAML(ch.Object.Unstructured)
	}
	d, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(before), B: difflib.SplitLines(after),
		FromFile: "live/" + ch.Ref, ToFile: "desired/" + ch.Ref, Context: 2,
	})
	return d
}

// project keeps of live only what shape (the manifest's object) sets.
func project(live, shape any) any {
	switch sh := shape.(type) {
	case map[string]any:
		lm, ok := live.(map[string]any)
		if !ok {
			return live
		}
		out := map[string]any{}
		for k, sv := range sh {
			if lv, ok := lm[k]; ok {
				out[k] = project(lv, sv)
			}
		}
		return out
	case []any:
		ll, ok := live.([]any)
		if !ok || len(ll) != len(sh) {
			return live
		}
		out := make([]any, len(ll))
		for i := range ll {
			out[i] = project(ll[i], sh[i])
		}
		return out
	}
	return live
}

func toYAML(u *unstructured.Unstructured) string {
	m := comparable(u)
	if u.GetKind() == "Secret" {
		for _, f := range []string{"data", "stringData"} {
			if d, ok := m[f].(map[string]any); ok {
				for k := range d {
					d[k] = "***"
				}
			}
		}
	}
	b, err := yaml.Marshal(m)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
