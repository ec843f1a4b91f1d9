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

// apply carries out the plan the secret stage made: creates, updates, Pod
// recreations and prunes; then records what this release applied in the
// namespace's inventory, for the next release's prune plan.
func (rel *release) apply(ctx context.Context) (string, error) {
	d := rel.o.Deploy
	// A run that changes nothing records nothing: the cluster runs the
	// revision recorded last already.
	if changes(rel.plan) > 0 {
		if err := rel.recordRevision(ctx); err != nil {
			return "", err
		}
	}
	applied, err := rel.kube.Execute(ctx, rel.plan, cluster.ApplyOptions{ForceConflicts: d.Force, NoRecreate: d.NoRecreate}, rel.announce("apply"))
	rel.res.Objects = append(rel.res.Objects, applied...)
	counts := map[cluster.Status]int{}
	for _, a := range applied {
		counts[a.Status]++
		rel.r.Report(report.Event{Time: time.Now(), Kind: report.Info, Stage: "apply", Message: a.Ref + " " + string(a.Status)})
	}
	if err != nil {
		rel.recordPartial(ctx, applied)
		rel.settleRevision(ctx, err)
		return "", err
	}
	entries := []cluster.Entry{cluster.EntryOf(rel.pullSecret().Object())}
	for _, obj := range rel.applied {
		entries = append(entries, cluster.EntryOf(obj))
	}
	if err := rel.kube.WriteInventory(ctx, d.Namespace, entries); err != nil {
		rel.settleRevision(ctx, err)
		return "", err
	}
	if !rel.scope.has("wait") {
		rel.settleRevision(ctx, nil) // nothing follows to say otherwise
	}
	summary := fmt.Sprintf("%d created, %d configured, %d recreated, %d pruned, %d unchanged",
		counts[cluster.Created], counts[cluster.Configured], counts[cluster.Recreated], counts[cluster.Pruned], counts[cluster.Unchanged])
	if rel.revision != nil {
		summary += fmt.Sprintf("; revision %d", rel.revision.Number)
	} else {
		summary += "; no revision recorded (nothing changed)"
	}
	return summary, nil
}

// recordPartial adds what an apply that failed or was interrupted did
// write to the inventory, so that a later release whose manifest drops
// those objects prunes them. It runs even when ctx is cancelled.
func (rel *release) recordPartial(ctx context.Context, applied []cluster.Applied) {
	objects := map[string]manifest.Object{}
	for _, ch := range rel.plan {
		objects[ch.Ref] = ch.Object
	}
	entries := slices.Clone(rel.inventory)
	for _, a := range applied {
		if obj, ok := objects[a.Ref]; ok && a.Status != cluster.Pruned && a.Status != cluster.Unchanged {
			entries = append(entries, cluster.EntryOf(obj))
		}
	}
	if len(entries) == len(rel.inventory) {
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = rel.kube.WriteInventory(wctx, rel.o.Deploy.Namespace, entries) // the apply's own error is the one to report
}
