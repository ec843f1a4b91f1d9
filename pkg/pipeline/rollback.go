package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
	"github.com/idopipe/idopipe/pkg/report"
)

// Rollback redeploys a revision the namespace's history recorded
// (o.Rollback.Revision, or the newest one deployed before the current):
// its objects and its images by digest, through the same stages as
// Deploy (the signature policy, the plan, the apply with its Pod
// recreations and prunes, the wait), after checking that the registry
// still has its images. No source, build or manifest file is read; the
// run records a revision of its own, "rollback to N".
func Rollback(ctx context.Context, o Options, d Deps, r report.Reporter) (Result, error) {
	return run(ctx, o, d, r, scope{selected: StageNames, deploy: true, rollback: true})
}

// connect reaches the cluster once per run.
func (rel *release) connect(ctx context.Context) (Cluster, error) {
	if rel.kube != nil {
		return rel.kube, nil
	}
	kube, err := rel.d.Connect(ctx)
	if err != nil {
		return nil, err
	}
	rel.kube = kube
	return kube, nil
}

// readRevision is a rollback's first stage: the revision's record (its
// objects, images and pull Secret's name) in place of the manifest files,
// and its images still in the registry by their digests, before anything
// is written.
func (rel *release) readRevision(ctx context.Context) (string, error) {
	kube, err := rel.connect(ctx)
	if err != nil {
		return "", err
	}
	ns := rel.o.Deploy.Namespace
	revs, err := kube.Revisions(ctx, ns)
	if err != nil {
		return "", err
	}
	target, err := cluster.RollbackTarget(revs, rel.o.Rollback.Revision)
	if err != nil {
		return "", err
	}
	rev, objs, err := kube.RevisionObjects(ctx, ns, target.Number)
	if err != nil {
		return "", err
	}
	if rev.ObjectsOmitted != "" {
		return "", fail.New(fail.Usage, "roll back to another revision, or release that version again",
			"revision %d cannot be rolled back to: %s, so they were not recorded", rev.Number, rev.ObjectsOmitted)
	}
	if len(rev.Images) == 0 || len(objs) == 0 {
		return "", fail.New(fail.Cluster, "roll back to another revision", "revision %d of %s records no image or no object", rev.Number, ns)
	}
	var images []*image
	for _, ri := range rev.Images {
		tag, err := name.NewTag(ri.Image, name.StrictValidation)
		if err != nil {
			return "", fail.New(fail.Cluster, "roll back to another revision", "revision %d records an invalid image %q", rev.Number, ri.Image)
		}
		if want := rel.o.Target.Registry; want != "" && tag.RegistryStr() != want {
			return "", fail.New(fail.Usage, "pass --registry "+tag.RegistryStr()+" (its token goes into the pull Secret)",
				"revision %d's image %s is on registry %s, not %s", rev.Number, ri.Name, tag.RegistryStr(), want)
		}
		ref := tag.Context().Digest(ri.Digest)
		if err := rel.d.Publisher.Has(ctx, ref); err != nil {
			if fail.ClassOf(err) == fail.NotFound {
				return "", fail.WithCause(fail.NotFound, err, "push that digest again (or roll back to another revision); nothing was changed",
					"image %s of revision %d is gone from the registry: %s", ri.Name, rev.Number, ref)
			}
			return "", err
		}
		img := &image{tag: tag, spec: build.Spec{Name: ri.Name}, Image: Image{Name: ri.Name, Image: tag.String()}}
		img.setDigest(ri.Digest)
		images = append(images, img)
	}
	rel.images, rel.objs, rel.rollbackTo = images, objs, &rev
	rel.o.Deploy.SecretName = rev.SecretName
	rel.record()
	return fmt.Sprintf("revision %d (%s, %s): %d objects, %s still in the registry",
		rev.Number, rev.Description, rev.Time.Local().Format(time.DateTime), len(objs), registry.Describe(images[0].tag, images[0].Digest)), nil
}

// rollBackAfter rolls back to the revision deployed before this run's,
// after this run's wait failed with failed (RollbackOnFailure), holding
// the lock this run holds, and returns failed saying what runs now.
func (rel *release) rollBackAfter(ctx context.Context, failed error) error {
	ns := rel.o.Deploy.Namespace
	revs, err := rel.kube.Revisions(ctx, ns)
	if err != nil {
		return addRollback(failed, "; no rollback: "+err.Error())
	}
	i := slices.IndexFunc(revs, func(r cluster.Revision) bool { return r.Status == cluster.Deployed })
	if i < 0 {
		return addRollback(failed, "; no rollback: no earlier revision of namespace "+ns+" was deployed")
	}
	to := revs[i].Number
	rel.r.Report(report.Event{Time: time.Now(), Kind: report.Info, Stage: "wait",
		Message: fmt.Sprintf("rolling back to revision %d (%s), the one deployed before: --rollback-on-failure", to, revs[i].Description)})
	o := rel.o
	o.Rollback = RollbackConfig{Revision: to}
	o.RollbackOnFailure = false
	o.Stages = Selection{}
	back := newRelease(o, rel.d, rel.r, scope{selected: StageNames, deploy: true, rollback: true})
	back.kube, back.lockHeld = rel.kube, true
	err = Run(ctx, stagesOf(back.scope, back), rel.r, back.res.Stages)
	back.done(err)
	rb := &RolledBack{To: to, Ref: back.res.Ref, Pods: back.res.Pods}
	if back.revision != nil {
		rb.Revision = back.revision.Number
	}
	rel.res.RolledBack = rb
	if err != nil {
		rb.Error = err.Error()
		return addRollback(failed, fmt.Sprintf("; the rollback to revision %d failed too: %s", to, err))
	}
	ready := 0
	for _, p := range back.res.Pods {
		if p.Ready {
			ready++
		}
	}
	return addRollback(failed, fmt.Sprintf("; rolled back to revision %d (revision %d): %s runs again, %d/%d Pods Ready",
		to, rb.Revision, back.res.Ref, ready, len(back.res.Pods)))
}

// addRollback is failed with what the rollback did added to its message;
// its class (and so the exit code) and fix stay.
func addRollback(failed error, what string) error {
	var fe *fail.Error
	if !errors.As(failed, &fe) {
		return fmt.Errorf("%w%s", failed, what)
	}
	return &fail.Error{Class: fe.Class, Msg: fe.Msg + what, Fix: fe.Fix, Err: fe}
}
