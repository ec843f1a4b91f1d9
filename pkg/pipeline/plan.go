package pipeline

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/manifest"
	"github.com/idopipe/idopipe/pkg/report"
)

// dryRun is the plan stage, the dry run (--dry-run, idopipe diff): every change the cluster
// stages would make, CRDs first, each with its diff, and the pull Secret's
// action without its data. Nothing is written; Result.Changes counts what
// would change.
func (rel *release) dryRun(ctx context.Context) (string, error) {
	if err := rel.requireSignature(ctx); err != nil {
		return "", err
	}
	crdPlan, err := rel.kube.Plan(ctx, rel.crds, cluster.ApplyOptions{ForceConflicts: rel.o.Deploy.Force})
	if err != nil {
		return "", err
	}
	rel.showPlan(crdPlan)
	nsMissing, err := rel.kube.NamespaceMissing(ctx, rel.o.Deploy.Namespace)
	if err != nil {
		return "", err
	}
	if err := rel.planObjects(ctx, nsMissing); err != nil {
		return "", err
	}
	ps := rel.pullSecret()
	act := cluster.Create
	if !nsMissing {
		if act, err = rel.kube.SecretAction(ctx, ps); err != nil {
			return "", err
		}
	}
	rel.r.Report(report.Event{Time: time.Now(), Kind: report.Info, Stage: "plan", Message: "Secret/" + ps.Namespace + "/" + ps.Name + ": " + string(act) + " (data not shown)"})
	rel.showPlan(rel.plan)
	rel.res.Changes = changes(crdPlan) + changes(rel.plan)
	if act != cluster.NoChange {
		rel.res.Changes++
	}
	return fmt.Sprintf("dry run: %s; nothing was changed", planCounts(rel.plan)), nil
}

// planObjects transforms the manifest for the cluster (namespace, images
// by digest, pull Secret) and plans it by server-side dry run, the pull
// Secret's included, then what earlier releases applied and this one
// drops (the prune plan). Objects of a namespace that does not exist yet
// are not validated (nsMissing).
func (rel *release) planObjects(ctx context.Context, nsMissing bool) error {
	objs, err := rel.transform(rel.o.Deploy.Pin)
	if err != nil {
		return err
	}
	rel.applied = manifest.Order(objs)
	ps := rel.pullSecret()
	if !nsMissing {
		if _, err := rel.kube.ApplySecret(ctx, ps, true); err != nil {
			return err
		}
	}
	plan, err := rel.kube.Plan(ctx, rel.applied, cluster.ApplyOptions{ForceConflicts: rel.o.Deploy.Force, NamespaceMissing: nsMissing})
	if err != nil {
		return err
	}
	if rel.inventory, err = rel.kube.Inventory(ctx, rel.o.Deploy.Namespace); err != nil {
		return err
	}
	prune, err := rel.kube.PrunePlan(ctx, rel.inventory, append(slices.Clone(rel.applied), ps.Object()))
	if err != nil {
		return err
	}
	rel.plan = append(plan, prune...)
	return nil
}

// showPlan reports each change, with its diff for creates, updates,
// recreations and deletions.
func (rel *release) showPlan(plan []cluster.Change) {
	for _, ch := range plan {
		msg := ch.Ref + ": " + string(ch.Action)
		if ch.Why != "" {
			msg += " (" + ch.Why + ")"
		}
		rel.r.Report(report.Event{Time: time.Now(), Kind: report.Info, Stage: "plan", Message: msg})
		if ch.Action != cluster.NoChange {
			rel.r.Report(report.Event{Time: time.Now(), Kind: report.Diff, Stage: "plan", Message: ch.Diff()})
		}
	}
}

func changes(plan []cluster.Change) int {
	n := 0
	for _, ch := range plan {
		if ch.Action != cluster.NoChange {
			n++
		}
	}
	return n
}

func planCounts(plan []cluster.Change) string {
	counts := map[cluster.Action]int{}
	for _, ch := range plan {
		counts[ch.Action]++
	}
	return fmt.Sprintf("%d to create, %d to update, %d to recreate, %d to prune, %d unchanged",
		counts[cluster.Create]+counts[cluster.Unchecked]+counts[cluster.Deferred], counts[cluster.Update], counts[cluster.Recreate], counts[cluster.Delete], counts[cluster.NoChange])
}
