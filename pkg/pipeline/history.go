package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/report"
)

// The history: the apply stage records a revision under the release lock
// before its first write (status pending), and the run's end says what
// became of it: deployed once the wait passed (or when no wait follows
// the apply), failed when the apply or the wait failed or the run ended
// before the wait did.

// recordRevision writes the revision this run is about to apply.
func (rel *release) recordRevision(ctx context.Context) error {
	d := rel.o.Deploy
	rev := cluster.Revision{
		Namespace:   d.Namespace,
		Status:      cluster.Pending,
		Description: "release",
		By:          cluster.Actor{User: rel.kube.WhoAmI(ctx), GitHub: rel.o.History.GitHub},
		Source:      rel.o.History.Source,
		SecretName:  d.SecretName,
	}
	switch {
	case rel.rollbackTo != nil:
		rev.Description = fmt.Sprintf("rollback to %d", rel.rollbackTo.Number)
		rev.RollbackTo = rel.rollbackTo.Number
		if rev.Source == (cluster.Source{}) {
			rev.Source = rel.rollbackTo.Source
		}
	case rel.scope.deploy:
		rev.Description = "deploy"
	}
	for _, img := range rel.images {
		rev.Images = append(rev.Images, cluster.RevisionImage{Name: img.Name, Image: img.Image.Image, Digest: img.Digest})
	}
	if s := rel.res.Signature; s != nil {
		rev.Signature = signedBy(*s)
	}
	rev, err := rel.kube.RecordRevision(ctx, rev, rel.applied, rel.o.History.Max)
	if err != nil {
		return err
	}
	rel.revision = &rev
	rel.res.Revision = &rev
	if rev.ObjectsOmitted != "" {
		rel.r.Report(report.Event{Time: time.Now(), Kind: report.Warning, Stage: "apply",
			Message: fmt.Sprintf("revision %d is recorded without its objects: %s; it cannot be rolled back to", rev.Number, rev.ObjectsOmitted)})
	}
	return nil
}

// settleRevision records what became of this run's revision: deployed
// when err is nil, else failed with err's message. It runs even when ctx
// is cancelled (an interrupted wait is a failed revision), and at most
// once.
func (rel *release) settleRevision(ctx context.Context, err error) {
	rev := rel.revision
	if rev == nil || rev.Status != cluster.Pending {
		return
	}
	st, reason := cluster.Deployed, ""
	if err != nil {
		st, reason = cluster.Failed, fail.OneLine(err.Error())
		if fail.ClassOf(err) == fail.Interrupted {
			reason = "interrupted: " + reason
		}
	}
	rev.Status, rev.Reason = st, reason
	if rel.kube.LockLost() != nil {
		return // the record is the new holder's now; the rerun writes its own
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if serr := rel.kube.SetRevisionStatus(wctx, rev.Namespace, rev.Number, st, reason); serr != nil {
		rel.r.Report(report.Event{Time: time.Now(), Kind: report.Warning, Stage: "wait",
			Message: fmt.Sprintf("revision %d stays %s in the history: %v", rev.Number, cluster.Pending, serr)})
	}
}
