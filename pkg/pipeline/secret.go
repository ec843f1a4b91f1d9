package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/report"
)

// secret prepares the cluster, in steps a reader can follow: the
// signature gate, the namespace and the release lock (held before any
// other write of the run), the CRDs, the dry-run plan of every object and
// of the prunes, then the pull Secret (the first write that matters) and
// the objects other objects' admission needs. A namespace this run created
// is removed again when a later step fails.
func (rel *release) secret(ctx context.Context) (summary string, err error) {
	if err := rel.requireSignature(ctx); err != nil {
		return "", err
	}
	if err := rel.holdNamespace(ctx); err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			rel.removeNamespaceMade(ctx)
		}
	}()
	if err := rel.applyCRDs(ctx); err != nil {
		return "", err
	}
	if err := rel.planObjects(ctx, false); err != nil {
		return "", err
	}
	if err := rel.refuseRecreate(ctx); err != nil {
		return "", err
	}
	st, err := rel.writePullSecret(ctx)
	if err != nil {
		return "", err
	}
	if err := rel.createNeeded(ctx); err != nil {
		return "", err
	}
	d := rel.o.Deploy
	return fmt.Sprintf("namespace %s, Secret %s %s, %d objects valid: %s", d.Namespace, d.SecretName, st, len(rel.applied), planCounts(rel.plan)), nil
}

// requireSignature: an image that is not signed as asked is refused
// before any write.
func (rel *release) requireSignature(ctx context.Context) error {
	gated, err := rel.gate(ctx)
	if err == nil && gated != "" {
		rel.announce("secret")(gated)
	}
	return err
}

// holdNamespace makes the namespace (it holds the release Lease; making
// it is the one write before the lock, and a concurrent release making it
// too is no conflict) and takes the namespace's release lock, waiting for
// a release that holds it.
func (rel *release) holdNamespace(ctx context.Context) error {
	d := rel.o.Deploy
	if rel.lockHeld {
		return nil
	}
	made, err := rel.kube.EnsureNamespace(ctx, d.Namespace)
	if err != nil {
		return err
	}
	if rel.unlock, err = rel.kube.Lock(ctx, d.Namespace, d.LockHolder, d.LockTimeout, rel.announce("secret")); err != nil {
		return err
	}
	// Only once the lock is held: a namespace is not removed under a
	// release that waited for this one's.
	rel.nsMade = made
	return nil
}

// removeNamespaceMade removes the namespace when this run created it.
func (rel *release) removeNamespaceMade(ctx context.Context) {
	ns := rel.o.Deploy.Namespace
	if !rel.nsMade {
		return
	}
	if err := rel.kube.DeleteNamespace(context.WithoutCancel(ctx), ns); err == nil {
		rel.r.Report(report.Event{Time: time.Now(), Kind: report.Info, Stage: "secret", Message: "removed namespace " + ns + ", created by this run"})
	}
}

// applyCRDs applies the CRDs and waits until they are Established: custom
// resources cannot be validated before their CRD is served.
func (rel *release) applyCRDs(ctx context.Context) error {
	if len(rel.crds) == 0 {
		return nil
	}
	opts := cluster.ApplyOptions{ForceConflicts: rel.o.Deploy.Force}
	plan, err := rel.kube.Plan(ctx, rel.crds, opts)
	if err != nil {
		return err
	}
	applied, err := rel.kube.Execute(ctx, plan, opts, rel.announce("secret"))
	if err != nil {
		return err
	}
	var names []string
	for _, c := range rel.crds {
		names = append(names, c.GetName())
	}
	if err := rel.kube.WaitEstablished(ctx, names, time.Minute); err != nil {
		return err
	}
	rel.res.Objects = append(rel.res.Objects, applied...)
	return nil
}

// refuseRecreate, with NoRecreate, refuses a plan that recreates a Pod
// before the first write, not halfway through the apply.
func (rel *release) refuseRecreate(ctx context.Context) error {
	if !rel.o.Deploy.NoRecreate {
		return nil
	}
	var recreate []cluster.Change
	for _, ch := range rel.plan {
		if ch.Action == cluster.Recreate {
			recreate = append(recreate, ch)
		}
	}
	_, err := rel.kube.Execute(ctx, recreate, cluster.ApplyOptions{NoRecreate: true}, nil)
	return err
}

// writePullSecret applies the pull Secret (server-side apply: the token
// is in the Secret only, never in an annotation).
func (rel *release) writePullSecret(ctx context.Context) (cluster.Status, error) {
	ps := rel.pullSecret()
	st, err := rel.kube.ApplySecret(ctx, ps, false)
	if err != nil {
		return "", err
	}
	rel.res.Objects = append(rel.res.Objects, cluster.Applied{Ref: "Secret/" + ps.Namespace + "/" + ps.Name, Status: st})
	return st, nil
}

// createNeeded creates the objects whose admission needs others of the
// manifest (a Pod and its ServiceAccount), once those exist, and
// validates the deferred ones.
func (rel *release) createNeeded(ctx context.Context) error {
	needed, err := rel.kube.CreateNeeded(ctx, rel.plan, cluster.ApplyOptions{ForceConflicts: rel.o.Deploy.Force}, rel.announce("secret"))
	rel.res.Objects = append(rel.res.Objects, needed...)
	if err != nil {
		rel.recordPartial(ctx, needed)
	}
	return err
}

func (rel *release) pullSecret() cluster.PullSecret {
	d := rel.o.Deploy
	return cluster.PullSecret{Namespace: d.Namespace, Name: d.SecretName, Registry: rel.images[0].tag.RegistryStr(), Creds: rel.o.Creds}
}
