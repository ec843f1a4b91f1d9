package kube

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/fail"
)

// Builder is a builder's state after Create, or as Status reads it.
type Builder struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Address   string            `json:"address"` // kube://NAMESPACE/NAME
	Kind      string            `json:"kind"`    // Deployment or StatefulSet
	Image     string            `json:"image"`
	Replicas  int32             `json:"replicas"`
	Ready     int32             `json:"ready"`
	Pods      []string          `json:"pods,omitempty"`
	Applied   []cluster.Applied `json:"applied,omitempty"`
	// Platform is the platform a member of a per-platform builder builds;
	// Platforms are a per-platform builder's members (its Replicas, Ready
	// and Pods are theirs summed).
	Platform  string    `json:"platform,omitempty"`
	Platforms []Builder `json:"platforms,omitempty"`
}

// Address is the --buildkit-host of builder name in namespace ns.
func Address(ns, name string) string { return "kube://" + ns + "/" + name }

// CreateOptions tune Create.
type CreateOptions struct {
	// Wait is how long to wait for every replica to be Ready (0: do not wait).
	Wait           time.Duration
	ForceConflicts bool
	Announce       func(string)
}

// Create writes the builder's objects by server-side apply (a rerun with
// other options updates them; unchanged objects are not written) and waits
// until its replicas answer. The namespace must exist: a builder is not a
// reason to create one.
//
// What an earlier create of the same name wrote and this one does not is
// deleted: a platform's builder no longer asked for, the per-platform
// builders of a builder that is now one, or the one builder that is now
// per platform.
func Create(ctx context.Context, kc *cluster.Client, c Config, o CreateOptions) (Builder, error) {
	announce := o.Announce
	if announce == nil {
		announce = func(string) {}
	}
	objs, err := Objects(c)
	if err != nil {
		return Builder{}, err
	}
	if err := namespaceExists(ctx, kc, c.Namespace); err != nil {
		return Builder{}, err
	}
	members := c.Members()
	bs := make([]Builder, len(members))
	for i, m := range members {
		bs[i] = Builder{Namespace: m.Namespace, Name: m.Name, Address: Address(m.Namespace, m.Name), Kind: objs[2*i+1].GetKind(), Image: m.image(), Replicas: m.Replicas, Platform: m.platform}
	}
	b := combine(c, bs)
	// Validated (a server-side dry run) before anything is written.
	plan, err := kc.Plan(ctx, objs, cluster.ApplyOptions{ForceConflicts: o.ForceConflicts})
	if err != nil {
		return b, err
	}
	stale, err := staleBuilders(ctx, kc, c)
	if err != nil {
		return b, err
	}
	for _, name := range stale {
		gone, _, err := removeBuilder(ctx, kc, c.Namespace, name)
		for _, g := range gone {
			announce(fmt.Sprintf("deleted %s (no longer part of builder %s)", g.Ref, b.Address))
		}
		b.Applied = append(b.Applied, gone...)
		if err != nil {
			return b, err
		}
	}
	for _, m := range bs {
		// The other workload kind (the builder moved between an emptyDir
		// and a claim) goes before the new one is written: two workloads
		// would select the same Pods.
		other := "StatefulSet"
		if m.Kind == "StatefulSet" {
			other = "Deployment"
		}
		gone, err := deleteOwned(ctx, kc, other, c.Namespace, m.Name)
		if _, foreign := err.(notOurs); err != nil && !foreign {
			return b, err // another's workload of that name selects other Pods: left alone
		}
		if gone != nil {
			announce(fmt.Sprintf("deleted %s (the builder is a %s now)", gone.Ref, m.Kind))
			b.Applied = append(b.Applied, *gone)
		}
	}
	applied, err := kc.Execute(ctx, plan, cluster.ApplyOptions{ForceConflicts: o.ForceConflicts}, announce)
	b.Applied = append(b.Applied, applied...)
	if err != nil {
		return b, err
	}
	if o.Wait == 0 {
		return b, nil
	}
	deadline := time.Now().Add(o.Wait)
	for i := range bs {
		ready, err := waitReady(ctx, kc, bs[i], max(time.Until(deadline), time.Second))
		bs[i] = ready
		if err != nil {
			nb := combine(c, bs)
			nb.Applied = b.Applied
			return nb, err
		}
	}
	nb := combine(c, bs)
	nb.Applied = b.Applied
	return nb, nil
}

// combine is builder c's state from its members': the one builder's, or
// the per-platform builders' summed, with each as a Platforms entry.
func combine(c Config, members []Builder) Builder {
	if len(c.Platforms) == 0 {
		return members[0]
	}
	b := Builder{Namespace: c.Namespace, Name: c.Name, Address: Address(c.Namespace, c.Name), Kind: members[0].Kind, Image: members[0].Image}
	for _, m := range members {
		b.Replicas += m.Replicas
		b.Ready += m.Ready
		b.Pods = append(b.Pods, m.Pods...)
		b.Platforms = append(b.Platforms, m)
	}
	return b
}

// staleBuilders are the builders of c's name that an earlier create wrote
// and c does not make: per-platform builders of platforms c does not
// have (all of them when c is one builder), and the one builder of c's
// name when c is per platform.
func staleBuilders(ctx context.Context, kc *cluster.Client, c Config) ([]string, error) {
	want := map[string]bool{}
	for _, m := range c.Members() {
		want[m.Name] = true
	}
	members, err := setMembers(ctx, kc, c.Namespace, c.Name)
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, m := range members {
		if !want[m] {
			stale = append(stale, m)
		}
	}
	if len(c.Platforms) > 0 {
		stale = append(stale, c.Name)
	}
	return stale, nil
}

// setMembers are the names of builder name's per-platform builders: the
// instances of the workloads and ConfigMaps create labelled with its name.
func setMembers(ctx context.Context, kc *cluster.Client, ns, name string) ([]string, error) {
	sel := metav1.ListOptions{LabelSelector: labels.SelectorFromSet(map[string]string{LabelSet: name, LabelManagedBy: managedBy, LabelName: nameValue}).String()}
	seen := map[string]bool{}
	add := func(items []metav1.Object) {
		for _, o := range items {
			if n := o.GetLabels()[LabelInstance]; n != "" {
				seen[n] = true
			}
		}
	}
	deps, err := kc.Core.AppsV1().Deployments(ns).List(ctx, sel)
	if err != nil {
		return nil, forbidden(err, "list the Deployments of builder "+name+" in namespace "+ns)
	}
	var objs []metav1.Object
	for i := range deps.Items {
		objs = append(objs, &deps.Items[i])
	}
	sts, err := kc.Core.AppsV1().StatefulSets(ns).List(ctx, sel)
	if err != nil {
		return nil, forbidden(err, "list the StatefulSets of builder "+name+" in namespace "+ns)
	}
	for i := range sts.Items {
		objs = append(objs, &sts.Items[i])
	}
	cms, err := kc.Core.CoreV1().ConfigMaps(ns).List(ctx, sel)
	if err != nil {
		return nil, forbidden(err, "list the ConfigMaps of builder "+name+" in namespace "+ns)
	}
	for i := range cms.Items {
		objs = append(objs, &cms.Items[i])
	}
	add(objs)
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// DryRun validates the builder's objects with a server-side dry run
// (nothing is written) and returns them as the server would store them.
func DryRun(ctx context.Context, kc *cluster.Client, c Config) ([]cluster.Change, error) {
	objs, err := Objects(c)
	if err != nil {
		return nil, err
	}
	if err := namespaceExists(ctx, kc, c.Namespace); err != nil {
		return nil, err
	}
	return kc.Plan(ctx, objs, cluster.ApplyOptions{})
}

func namespaceExists(ctx context.Context, kc *cluster.Client, ns string) error {
	missing, err := kc.NamespaceMissing(ctx, ns)
	if err != nil {
		return err
	}
	if missing {
		return fail.New(fail.Usage, "create it (kubectl create namespace "+ns+") or pass another -n", "namespace %s does not exist", ns)
	}
	return nil
}

// waitReady waits until the builder's workload has every replica updated
// and Ready (readiness is `buildctl debug workers` answering).
func waitReady(ctx context.Context, kc *cluster.Client, b Builder, timeout time.Duration) (Builder, error) {
	var last Builder
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		cur, done, err := readiness(ctx, kc, b)
		if err != nil {
			return false, err
		}
		last = cur
		return done, nil
	})
	if err == nil {
		return last, nil
	}
	if ctx.Err() != nil {
		return last, ctx.Err()
	}
	if fe, ok := err.(*fail.Error); ok {
		return last, fe
	}
	return last, fail.New(fail.NotReady, "see `kubectl -n "+b.Namespace+" describe pod -l "+LabelInstance+"="+b.Name+"`, or wait longer with --timeout",
		"builder %s/%s: %d of %d replicas Ready after %s%s", b.Namespace, b.Name, last.Ready, b.Replicas, timeout, podsSummary(ctx, kc, b))
}

// readiness reads the workload: done when its controller has seen the
// latest spec and every replica is updated and Ready, with no old Pod left.
func readiness(ctx context.Context, kc *cluster.Client, b Builder) (Builder, bool, error) {
	var gen, observed int64
	var want, ready, updated int32
	switch b.Kind {
	case "StatefulSet":
		s, err := kc.Core.AppsV1().StatefulSets(b.Namespace).Get(ctx, b.Name, metav1.GetOptions{})
		if err != nil {
			return b, false, fail.Wrap(fail.Cluster, err, "", "cannot read StatefulSet %s/%s", b.Namespace, b.Name)
		}
		gen, observed, want, ready, updated = s.Generation, s.Status.ObservedGeneration, ptrOr(s.Spec.Replicas, 1), s.Status.ReadyReplicas, s.Status.UpdatedReplicas
		if s.Status.CurrentRevision != s.Status.UpdateRevision {
			updated = min(updated, want-1)
		}
	default:
		d, err := kc.Core.AppsV1().Deployments(b.Namespace).Get(ctx, b.Name, metav1.GetOptions{})
		if err != nil {
			return b, false, fail.Wrap(fail.Cluster, err, "", "cannot read Deployment %s/%s", b.Namespace, b.Name)
		}
		gen, observed, want, ready, updated = d.Generation, d.Status.ObservedGeneration, ptrOr(d.Spec.Replicas, 1), d.Status.ReadyReplicas, d.Status.UpdatedReplicas
		if d.Status.Replicas > want { // old Pods still terminating
			updated = min(updated, want-1)
		}
		if deploymentFailed(d) {
			return b, false, fail.New(fail.NotReady, "see `kubectl -n "+b.Namespace+" describe deployment "+b.Name+"`",
				"builder %s/%s: its Deployment made no progress", b.Namespace, b.Name)
		}
	}
	b.Ready = ready
	pods, err := readyPods(ctx, kc, b.Namespace, b.Name)
	if err != nil {
		return b, false, err
	}
	b.Pods = pods
	return b, observed >= gen && ready >= want && updated >= want && int32(len(pods)) == want, nil
}

func deploymentFailed(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
			return true
		}
	}
	return false
}

func ptrOr(p *int32, d int32) int32 {
	if p == nil {
		return d
	}
	return *p
}

// readyPods are the names of the builder's Ready Pods that are not being
// deleted, sorted.
func readyPods(ctx context.Context, kc *cluster.Client, ns, name string) ([]string, error) {
	list, err := kc.Core.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(Selector(name)).String()})
	if err != nil {
		return nil, fail.Wrap(fail.Cluster, err, "", "cannot list the Pods of builder %s/%s", ns, name)
	}
	var out []string
	for i := range list.Items {
		if podReady(&list.Items[i]) {
			out = append(out, list.Items[i].Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// podsSummary is ": POD STATE, …" for the builder's Pods that are not Ready.
func podsSummary(ctx context.Context, kc *cluster.Client, b Builder) string {
	list, err := kc.Core.CoreV1().Pods(b.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(Selector(b.Name)).String()})
	if err != nil || len(list.Items) == 0 {
		return ""
	}
	var parts []string
	for i := range list.Items {
		p := &list.Items[i]
		if !podReady(p) {
			parts = append(parts, kc.Diagnose(ctx, p).String())
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + strings.Join(parts, "; ")
}

// Removed is what Remove deleted and what it left.
type Removed struct {
	Deleted []cluster.Applied `json:"deleted"`
	Kept    []string          `json:"kept,omitempty"` // with the reason
}

// Remove deletes what Create wrote for builder name in ns: its
// Deployment or StatefulSet and its ConfigMap, and those of its
// per-platform builders, each only when it carries the labels Create
// gives it. A StatefulSet's claims hold the cache and are kept (listed in
// Kept). It waits up to wait for the Pods to be gone.
func Remove(ctx context.Context, kc *cluster.Client, ns, name string, wait time.Duration) (Removed, error) {
	var r Removed
	if err := namespaceExists(ctx, kc, ns); err != nil {
		return r, err
	}
	members, err := setMembers(ctx, kc, ns, name)
	if err != nil {
		return r, err
	}
	names := append([]string{name}, members...)
	for _, n := range names {
		gone, kept, err := removeBuilder(ctx, kc, ns, n)
		r.Deleted = append(r.Deleted, gone...)
		r.Kept = append(r.Kept, kept...)
		if err != nil {
			return r, err
		}
	}
	if len(r.Deleted) == 0 && len(r.Kept) == 0 {
		return r, fail.New(fail.Usage, "check the name and -n (`kubectl -n "+ns+" get deploy,sts -l "+LabelManagedBy+"=idopipe`)",
			"no builder %s in namespace %s", name, ns)
	}
	for _, n := range names {
		claims, _ := kc.Core.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(Selector(n)).String()})
		if claims != nil {
			for _, c := range claims.Items {
				r.Kept = append(r.Kept, "PersistentVolumeClaim/"+ns+"/"+c.Name+" (the builder's cache; delete it to free the storage)")
			}
		}
	}
	if wait > 0 {
		deadline := time.Now().Add(wait)
		for _, n := range names {
			if err := waitPodsGone(ctx, kc, ns, n, max(time.Until(deadline), time.Second)); err != nil {
				return r, err
			}
		}
	}
	return r, nil
}

// removeBuilder deletes one builder's workload and ConfigMap where create
// wrote them, and says which objects of its names it left (not ours).
func removeBuilder(ctx context.Context, kc *cluster.Client, ns, name string) (deleted []cluster.Applied, kept []string, err error) {
	for _, kind := range []string{"Deployment", "StatefulSet", "ConfigMap"} {
		n := name
		if kind == "ConfigMap" {
			n = configMapName(name)
		}
		gone, err := deleteOwned(ctx, kc, kind, ns, n)
		if err != nil {
			if nf, ok := err.(notOurs); ok {
				kept = append(kept, string(nf))
				continue
			}
			return deleted, kept, err
		}
		if gone != nil {
			deleted = append(deleted, *gone)
		}
	}
	return deleted, kept, nil
}

// notOurs is an object of the builder's name that Create did not write.
type notOurs string

func (n notOurs) Error() string { return string(n) }

// deleteOwned deletes kind ns/name when it carries a builder's labels for
// name. Absent: nil, nil. Present but not ours: a notOurs error.
func deleteOwned(ctx context.Context, kc *cluster.Client, kind, ns, name string) (*cluster.Applied, error) {
	ref := kind + "/" + ns + "/" + name
	var meta metav1.Object
	var err error
	var del func() error
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg}
	switch kind {
	case "Deployment":
		var o *appsv1.Deployment
		o, err = kc.Core.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		meta, del = o, func() error { return kc.Core.AppsV1().Deployments(ns).Delete(ctx, name, opts) }
	case "StatefulSet":
		var o *appsv1.StatefulSet
		o, err = kc.Core.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		meta, del = o, func() error { return kc.Core.AppsV1().StatefulSets(ns).Delete(ctx, name, opts) }
	case "ConfigMap":
		var o *corev1.ConfigMap
		o, err = kc.Core.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		meta, del = o, func() error { return kc.Core.CoreV1().ConfigMaps(ns).Delete(ctx, name, opts) }
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, forbidden(err, "read "+ref)
	}
	l := meta.GetLabels()
	builder := strings.TrimSuffix(name, "-config")
	if l[LabelManagedBy] != managedBy || l[LabelName] != nameValue || l[LabelInstance] != builder {
		return nil, notOurs(ref + " (not written by idopipe buildkit create: left alone)")
	}
	if err := del(); err != nil && !apierrors.IsNotFound(err) {
		return nil, forbidden(err, "delete "+ref)
	}
	return &cluster.Applied{Ref: ref, Status: "deleted"}, nil
}

func forbidden(err error, what string) error {
	if apierrors.IsForbidden(err) {
		return fail.Wrap(fail.Cluster, err, "grant the kubeconfig's identity that permission", "not allowed to %s", what)
	}
	return fail.Wrap(fail.Cluster, err, "", "cannot %s", what)
}

func waitPodsGone(ctx context.Context, kc *cluster.Client, ns, name string, timeout time.Duration) error {
	sel := labels.SelectorFromSet(Selector(name)).String()
	var left int
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		list, err := kc.Core.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return false, fail.Wrap(fail.Cluster, err, "", "cannot list the Pods of builder %s/%s", ns, name)
		}
		left = len(list.Items)
		return left == 0, nil
	})
	if err != nil && ctx.Err() == nil {
		if fe, ok := err.(*fail.Error); ok {
			return fe
		}
		return fail.New(fail.NotReady, "they are deleted in the background; check `kubectl -n "+ns+" get pods -l "+LabelInstance+"="+name+"`",
			"%d Pods of builder %s/%s still terminating after %s", left, ns, name, timeout)
	}
	return err
}
