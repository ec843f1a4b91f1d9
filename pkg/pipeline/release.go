package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
	"github.com/idopipe/idopipe/pkg/publish"
	"github.com/idopipe/idopipe/pkg/registry"
	"github.com/idopipe/idopipe/pkg/report"
	"github.com/idopipe/idopipe/pkg/sign"
	"github.com/idopipe/idopipe/pkg/verify"
)

// Options is everything a release needs, already parsed.
type Options struct {
	Build        build.Spec
	BuildOptions []build.Option
	// Extra are more images built in the same run (the actuator plugins),
	// concurrently on one BuildKit client, each pushed as
	// <registry>/<owner>/<Name>:<Version> and put into the containers that
	// run an image of that name.
	Extra []build.Spec

	Registry string // e.g. ghcr.io
	Owner    string // lowercased for the repository path
	Creds    creds.Credentials
	Access   registry.Access // Creds are filled in from Creds
	Tags     []string        // extra tags for the pushed image
	// MountFrom are repositories of the registry that may hold blobs of the
	// images; the images pushed earlier in the run are added for the later
	// ones. The registry mounts what they hold instead of an upload.
	MountFrom []name.Repository

	Manifests  []string // manifest files, applied in order
	CRDs       []string // CRD files, applied and Established first
	Namespace  string
	SecretName string
	Pin        bool // reference the image by digest in the Pods
	Force      bool // --force-conflicts
	NoRecreate bool // refuse to delete and recreate changed Pods
	DryRun     bool // validate and show the plan; build, push and write nothing

	Timeout time.Duration // for the Pods to become Ready

	// LockHolder names this run in the namespace's release Lease, which the
	// cluster stages hold so that two releases cannot interleave; a second
	// one waits up to LockTimeout.
	LockHolder  string
	LockTimeout time.Duration
	Cluster     genericclioptions.RESTClientGetter

	Progress io.Writer      // push progress lines; nil for none
	Bar      publish.NewBar // with Progress: a bar redrawn in place (a terminal) instead of lines

	// Stages selects stages by name (--from, --to, --skip).
	Stages Selection

	// Signer, when set, signs every pushed digest (and its platform images
	// and provenance) in the push stage.
	Signer sign.Signer
	// VerifyKeys, when set, must include a key that signed the image's
	// digest; checked before the first write to the cluster.
	VerifyKeys []sign.Key

	// Image, for Deploy only: the already pushed image (tag, or tag@digest)
	// that replaces the manifest's image named Build.Name.
	Image string
}

// Result is what a release produced.
type Result struct {
	Image   string             `json:"image"`           // tag
	Digest  string             `json:"digest"`          // sha256:…
	Ref     string             `json:"ref"`             // tag@digest
	Blobs   *publish.Stats     `json:"blobs,omitempty"` // what the push did; none when the image was there already
	Verify  *verify.Report     `json:"verify,omitempty"`
	Extra   []Image            `json:"extraImages,omitempty"` // Options.Extra, pushed
	Objects []cluster.Applied  `json:"objects,omitempty"`
	Pods    []cluster.PodState `json:"pods,omitempty"`
	// Rollouts are the other objects the wait followed (Deployments, Jobs,
	// custom resources), with their kstatus.
	Rollouts []cluster.ObjectState `json:"rollouts,omitempty"`
	Stages   map[string]float64    `json:"stages"` // seconds per stage

	// Signed is what the push stage signed; Signature the check of
	// VerifyKeys (which key signed the digest).
	Signed    []*sign.Result `json:"signed,omitempty"`
	Signature *sign.Verified `json:"signature,omitempty"`
}

// Image is one more image of a release: its tag, digest and reference.
type Image struct {
	Name   string `json:"name"`
	Image  string `json:"image"`
	Digest string `json:"digest"`
	Ref    string `json:"ref"`
	// Blobs: what the push did; none when the image was there already.
	Blobs *publish.Stats `json:"blobs,omitempty"`
}

// extra is an Options.Extra image on its way through the stages.
type extra struct {
	spec  build.Spec
	tag   name.Tag
	built build.Result
	Image
}

// Stage is one step of the pipeline.
type Stage struct {
	Name string
	Run  func(ctx context.Context) (summary string, err error)
}

// Run runs stages in order, reporting each; it stops at the first error.
func Run(ctx context.Context, stages []Stage, r report.Reporter, times map[string]float64) error {
	var done []string
	interrupted := func(where string) error {
		did := "nothing done yet"
		if len(done) > 0 {
			did = "done: " + strings.Join(done, ", ")
		}
		return fail.Wrap(fail.Interrupted, nil, "rerun; it converges", "interrupted %s (%s)", where, did)
	}
	for _, s := range stages {
		if err := ctx.Err(); err != nil {
			return interrupted("before stage " + s.Name)
		}
		start := time.Now()
		r.Report(report.Event{Time: start, Kind: report.StageStart, Stage: s.Name})
		summary, err := s.Run(ctx)
		d := time.Since(start)
		if times != nil {
			times[s.Name] = d.Seconds()
		}
		if err != nil {
			if ctx.Err() != nil {
				err = interrupted("during stage " + s.Name)
			}
			r.Report(report.Event{Time: time.Now(), Kind: report.StageFail, Stage: s.Name, Duration: d, Message: err.Error()})
			return err
		}
		r.Report(report.Event{Time: time.Now(), Kind: report.StageDone, Stage: s.Name, Duration: d, Message: summary})
		done = append(done, s.Name)
	}
	return nil
}

// RunStage runs one stage on its own, as the single-stage commands do.
func RunStage(ctx context.Context, name string, run func(ctx context.Context) (string, error), r report.Reporter) error {
	return Run(ctx, []Stage{{Name: name, Run: run}}, r, nil)
}

// release carries values from stage to stage.
type release struct {
	o       Options
	r       report.Reporter
	res     Result
	tag     name.Tag
	objs    []manifest.Object // decoded manifests
	crds    []manifest.Object
	applied []manifest.Object // transformed, in apply order
	plan    []cluster.Change  // what apply will do, from the dry run
	kube    *cluster.Client
	built   build.Result
	nsMade  bool

	extras     []*extra
	deployOnly bool // Deploy: no build, o.Image is the image

	// alongside: the registry and cluster checks run during the build;
	// checksDone is closed once checksErr holds their result; checksCtx
	// bounds them.
	alongside  bool
	checksDone chan struct{}
	checksErr  error
	checksCtx  context.Context
	unlock     func() // releases the namespace's release lock

	inventory []cluster.Entry // what earlier releases recorded in the namespace

	// noCluster: no cluster stage (secret, apply, wait) is selected, as in
	// a CI job without a kubeconfig: no manifests are read, no cluster is
	// asked.
	noCluster bool
	gated     bool // the VerifyKeys check passed
}

// done releases what the run holds.
func (rel *release) done() {
	if rel.unlock != nil {
		rel.unlock()
	}
}

// Release runs the whole pipeline.
func Release(ctx context.Context, o Options, r report.Reporter) (Result, error) {
	rel := &release{o: o, r: r, res: Result{Stages: map[string]float64{}}}
	rel.o.Access.Creds = &rel.o.Creds
	if rel.o.Build.Layout == "" {
		dir, err := os.MkdirTemp("", "idopipe-oci-")
		if err != nil {
			return rel.res, fail.Wrap(fail.Internal, err, "", "cannot make a temporary directory")
		}
		defer os.RemoveAll(dir)
		rel.o.Build.Layout = dir
	}
	all := map[string]func(context.Context) (string, error){
		"validate": rel.validate, "build": rel.build, "push": rel.push, "verify-pull": rel.verify,
		"secret": rel.secret, "apply": rel.apply, "wait": rel.wait,
	}
	names, err := o.Stages.selected()
	if err != nil {
		return rel.res, err
	}
	rel.alongside = slices.Contains(names, "build") && !o.DryRun
	rel.noCluster = !o.DryRun && !slices.ContainsFunc(names, func(n string) bool { return n == "secret" || n == "apply" || n == "wait" })
	cctx, cancelChecks := context.WithCancel(ctx)
	defer cancelChecks()
	rel.checksCtx = cctx
	var stages []Stage
	for _, n := range names {
		stages = append(stages, Stage{n, all[n]})
		if n == "build" && rel.alongside {
			stages = append(stages, Stage{"checks", rel.awaitChecks})
		}
		if n == "validate" && !slices.Contains(names, "build") && slices.ContainsFunc(names, func(n string) bool { return n != "validate" }) {
			// Not building: the later stages use what the registry has.
			stages = append(stages, Stage{"resolve", rel.resolve})
		}
	}
	if o.DryRun {
		// Nothing is built or pushed: the plan uses the tag for the image.
		stages = []Stage{{"validate", rel.validate}, {"plan", rel.secret}}
	}
	err = Run(ctx, stages, r, rel.res.Stages)
	rel.done()
	return rel.res, err
}

// Deploy runs the cluster stages for an image that is already pushed
// (o.Image): validate, secret, apply, wait.
func Deploy(ctx context.Context, o Options, r report.Reporter) (Result, error) {
	rel := &release{o: o, r: r, res: Result{Stages: map[string]float64{}}, deployOnly: true}
	rel.o.Access.Creds = &rel.o.Creds
	stages := []Stage{
		{"validate", rel.validate},
		{"secret", rel.secret},
		{"apply", rel.apply},
		{"wait", rel.wait},
	}
	if o.DryRun {
		stages = []Stage{{"validate", rel.validate}, {"plan", rel.secret}}
	}
	err := Run(ctx, stages, r, rel.res.Stages)
	rel.done()
	return rel.res, err
}

// validate checks every input that can be checked here, before any build
// work: image names, build inputs, manifests and CRDs (read, decoded, no
// duplicates). The checks that ask the registry and the cluster (checks)
// run alongside the build when there is one, else here.
func (rel *release) validate(ctx context.Context) (string, error) {
	o := rel.o
	if rel.deployOnly {
		if err := rel.parseImage(); err != nil {
			return "", err
		}
	} else {
		tag, err := Tag(o.Registry, o.Owner, o.Build.Name, o.Build.Version)
		if err != nil {
			return "", err
		}
		rel.tag = tag
		if err := o.Build.Validate(); err != nil {
			return "", err
		}
		for _, spec := range o.Extra {
			if spec.Layout == "" {
				spec.Layout = o.Build.Layout
			}
			et, err := Tag(o.Registry, o.Owner, spec.Name, spec.Version)
			if err != nil {
				return "", err
			}
			if err := spec.Validate(); err != nil {
				return "", err
			}
			rel.extras = append(rel.extras, &extra{spec: spec, tag: et, Image: Image{Name: spec.Name, Image: et.String()}})
		}
	}
	if rel.noCluster {
		return rel.validateRegistryOnly(ctx)
	}
	if len(o.Manifests) == 0 {
		return "", fail.New(fail.Usage, "pass --manifest FILE", "no manifest to deploy")
	}
	for _, f := range o.CRDs {
		objs, err := manifest.ReadFile(f)
		if err != nil {
			return "", err
		}
		for _, obj := range objs {
			if obj.GetKind() != "CustomResourceDefinition" {
				return "", fail.New(fail.Manifest, "pass it with --manifest instead", "--crds file %s holds a %s", obj.Source, obj.GetKind())
			}
		}
		rel.crds = append(rel.crds, objs...)
	}
	for _, f := range o.Manifests {
		objs, err := manifest.ReadFile(f)
		if err != nil {
			return "", err
		}
		rel.objs = append(rel.objs, objs...)
	}
	if err := manifest.CheckDuplicates(rel.objs); err != nil {
		return "", err
	}
	if o.Cluster == nil {
		return "", fail.New(fail.Usage, "pass --kubeconfig", "no cluster configured")
	}
	if _, err := rel.o.Access.Transport(); err != nil { // --registry-ca readable
		return "", err
	}
	summary := fmt.Sprintf("%d objects, %d CRDs, image %s", len(rel.objs), len(rel.crds), rel.tag)
	if rel.alongside {
		// The registry and cluster checks touch nothing: they run while
		// BuildKit builds, and the release waits for them before the push.
		rel.checksDone = make(chan struct{})
		go func() {
			defer close(rel.checksDone)
			_, rel.checksErr = rel.checks(rel.checksCtx)
		}()
		return summary + "; registry and cluster checks run alongside the build", nil
	}
	more, err := rel.checks(ctx)
	if err != nil {
		return "", err
	}
	return summary + ", " + more, nil
}

// validateRegistryOnly is validate for a release that stops before the
// cluster: the registry check alone, alongside the build when there is one.
func (rel *release) validateRegistryOnly(ctx context.Context) (string, error) {
	if _, err := rel.o.Access.Transport(); err != nil { // --registry-ca readable
		return "", err
	}
	summary := fmt.Sprintf("image %s; no cluster stage selected: no manifests read, no cluster asked", rel.tag)
	if rel.alongside {
		rel.checksDone = make(chan struct{})
		go func() {
			defer close(rel.checksDone)
			rel.checksErr = rel.preflight(rel.checksCtx)
		}()
		return summary + "; the registry check runs alongside the build", nil
	}
	return summary, rel.preflight(ctx)
}

// preflight proves the token may push to every repository of the release.
func (rel *release) preflight(ctx context.Context) error {
	repos := []name.Repository{rel.tag.Context()}
	for _, e := range rel.extras {
		repos = append(repos, e.tag.Context())
	}
	for _, repo := range repos {
		if err := publish.Preflight(ctx, repo, rel.o.Access); err != nil {
			return err
		}
	}
	return nil
}

// checks asks the registry and the cluster, changing nothing: the token
// may push, the API server answers, every kind is served (or defined by
// --crds), the manifest transform works (namespaces, the images run), and
// the namespace and pull Secret name are usable.
func (rel *release) checks(ctx context.Context) (string, error) {
	o := rel.o
	if !rel.deployOnly {
		// A token that can log in but not push is found before any push.
		if err := rel.preflight(ctx); err != nil {
			return "", err
		}
	}
	kube, err := cluster.New(ctx, o.Cluster)
	if err != nil {
		return "", err
	}
	rel.kube = kube
	if _, err := rel.transform(false); err != nil {
		return "", err
	}
	if err := kube.CheckTarget(ctx, o.Namespace, o.SecretName); err != nil {
		return "", err
	}
	return "cluster " + kube.Host, nil
}

// awaitChecks is the stage after the build: the release goes on to the
// push only once the checks that ran alongside the build have passed.
func (rel *release) awaitChecks(ctx context.Context) (string, error) {
	select {
	case <-rel.checksDone:
		if rel.checksErr != nil {
			return "", rel.checksErr
		}
		if rel.kube == nil { // noCluster
			return "registry ready", nil
		}
		return "registry and cluster ready, cluster " + rel.kube.Host, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// build builds the image(s). A registry or cluster check that fails
// alongside cancels the build: a long build is not worth finishing for a
// release that cannot push or deploy, and the check's error is the stage's.
func (rel *release) build(ctx context.Context) (string, error) {
	if !rel.alongside {
		return rel.buildImages(ctx)
	}
	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-rel.checksDone:
			if rel.checksErr != nil {
				cancel(rel.checksErr)
			}
		case <-bctx.Done(): // the build ended first
		}
	}()
	summary, err := rel.buildImages(bctx)
	// The build stopped because a check failed: that is the error to show
	// (a build that failed by itself keeps its own).
	if cause := context.Cause(bctx); errors.Is(err, context.Canceled) && ctx.Err() == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		return "", cause
	}
	return summary, err
}

func (rel *release) buildImages(ctx context.Context) (string, error) {
	if len(rel.extras) == 0 {
		res, err := build.Build(ctx, rel.o.Build, rel.o.BuildOptions...)
		if err != nil {
			return "", err
		}
		rel.built = res
		return res.Digest, nil
	}
	specs := []build.Spec{rel.o.Build}
	for _, e := range rel.extras {
		specs = append(specs, e.spec)
	}
	all, err := build.BuildAll(ctx, specs, rel.o.BuildOptions...)
	if err != nil {
		return "", err
	}
	rel.built = all[0]
	built := []string{rel.o.Build.Name + " " + all[0].Digest}
	for i, e := range rel.extras {
		e.built = all[i+1]
		built = append(built, e.Name+" "+e.built.Digest)
	}
	return strings.Join(built, ", "), nil
}

func (rel *release) push(ctx context.Context) (string, error) {
	// Each image may mount blobs from --mount-from and from the images
	// pushed before it in this run (an actuator sharing the planner's base).
	mountFrom := slices.Clone(rel.o.MountFrom)
	pushOne := func(layout, digest string, tag name.Tag) (string, *publish.Stats, string, error) {
		ref := registry.Describe(tag, digest)
		if have, err := rel.registryDigest(ctx, tag); err == nil && have == digest && len(rel.o.Tags) == 0 {
			// A rerun after a failure later on: the image is there already.
			mountFrom = append(mountFrom, tag.Context())
			rel.announce("push")(ref + " is already in the registry: not pushed again")
			return digest, nil, ref + " (already pushed)", nil
		}
		var stats publish.Stats
		opts := []publish.Option{publish.WithTags(rel.o.Tags...), publish.WithMountFrom(mountFrom...), publish.WithStats(&stats)}
		opts = append(opts, publish.WithProgressBar(rel.o.Progress, rel.o.Bar))
		d, err := publish.Push(ctx, layout, digest, tag, rel.o.Access, opts...)
		if err != nil {
			return "", nil, "", err
		}
		mountFrom = append(mountFrom, tag.Context())
		return d.DigestStr(), &stats, registry.Describe(tag, d.DigestStr()) + " [" + stats.String() + "]", nil
	}
	d, stats, summary, err := pushOne(rel.built.Layout, rel.built.Digest, rel.tag)
	if err != nil {
		return "", err
	}
	signed, err := rel.signPushed(ctx, rel.tag, d)
	if err != nil {
		return "", err
	}
	if signed != nil {
		rel.res.Signed = append(rel.res.Signed, signed)
	}
	rel.res.Image = rel.tag.String()
	rel.res.Digest = d
	rel.res.Ref = registry.Describe(rel.tag, d)
	rel.res.Blobs = stats
	refs := []string{summary}
	for _, e := range rel.extras {
		d, stats, summary, err := pushOne(e.built.Layout, e.built.Digest, e.tag)
		if err != nil {
			return "", err
		}
		signed, err := rel.signPushed(ctx, e.tag, d)
		if err != nil {
			return "", err
		}
		if signed != nil {
			rel.res.Signed = append(rel.res.Signed, signed)
		}
		e.Digest, e.Ref, e.Blobs = d, registry.Describe(e.tag, d), stats
		rel.res.Extra = append(rel.res.Extra, e.Image)
		refs = append(refs, summary)
	}
	return strings.Join(refs, ", ") + signedSummary(rel.res.Signed), nil
}

func (rel *release) verify(ctx context.Context) (string, error) {
	rep, err := verify.Pull(ctx, rel.tag, rel.res.Digest, rel.o.Access)
	if err != nil {
		return "", err
	}
	rel.res.Verify = &rep
	for _, e := range rel.extras {
		if _, err := verify.Pull(ctx, e.tag, e.Digest, rel.o.Access); err != nil {
			return "", err
		}
	}
	summary := rep.String()
	if len(rel.extras) > 0 {
		summary = fmt.Sprintf("%s; and %d more images", summary, len(rel.extras))
	}
	gated, err := rel.gate(ctx)
	if err != nil {
		return "", err
	}
	if gated != "" {
		summary += "; " + gated
	}
	return summary, nil
}

// secret applies the CRDs (custom resources cannot be validated before
// their CRD exists), makes the namespace, and validates every object by a
// server-side dry run (the plan) before the pull Secret, its first write
// that matters. A namespace this run created is removed again when the
// dry run fails. With DryRun it only plans and prints each object's diff.
func (rel *release) secret(ctx context.Context) (summary string, err error) {
	o := rel.o
	kube := rel.kube
	// An image that is not signed as asked is refused before any write.
	if gated, err := rel.gate(ctx); err != nil {
		return "", err
	} else if gated != "" {
		rel.announce("secret")(gated)
	}
	for _, crd := range rel.crds {
		crd.SetNamespace("")
	}
	crdPlan, err := kube.Plan(ctx, rel.crds, cluster.ApplyOptions{ForceConflicts: o.Force})
	if err != nil {
		return "", err
	}
	if o.DryRun {
		rel.showPlan(crdPlan)
	} else {
		crdsApplied, err := kube.Execute(ctx, crdPlan, cluster.ApplyOptions{ForceConflicts: o.Force}, rel.announce("secret"))
		if err != nil {
			return "", err
		}
		var names []string
		for _, c := range rel.crds {
			names = append(names, c.GetName())
		}
		if err := kube.WaitEstablished(ctx, names, time.Minute); err != nil {
			return "", err
		}
		rel.res.Objects = append(rel.res.Objects, crdsApplied...)
	}

	objs, err := rel.transform(o.Pin)
	if err != nil {
		return "", err
	}
	rel.applied = manifest.Order(objs)

	nsMissing := false
	if o.DryRun {
		if nsMissing, err = kube.NamespaceMissing(ctx, o.Namespace); err != nil {
			return "", err
		}
	} else {
		if rel.nsMade, err = kube.EnsureNamespace(ctx, o.Namespace); err != nil {
			return "", err
		}
		if rel.unlock, err = kube.Lock(ctx, o.Namespace, o.LockHolder, o.LockTimeout, rel.announce("secret")); err != nil {
			return "", err
		}
		defer func() {
			if err != nil && rel.nsMade {
				if derr := kube.DeleteNamespace(context.WithoutCancel(ctx), o.Namespace); derr == nil {
					rel.r.Report(report.Event{Time: time.Now(), Kind: report.Info, Stage: "secret", Message: "removed namespace " + o.Namespace + ", created by this run"})
				}
			}
		}()
	}
	ps := cluster.PullSecret{Namespace: o.Namespace, Name: o.SecretName, Registry: rel.tag.RegistryStr(), Creds: o.Creds}
	if !nsMissing {
		if _, err := kube.ApplySecret(ctx, ps, true); err != nil {
			return "", err
		}
	}
	plan, err := kube.Plan(ctx, rel.applied, cluster.ApplyOptions{ForceConflicts: o.Force, NamespaceMissing: nsMissing})
	if err != nil {
		return "", err
	}
	old, err := kube.Inventory(ctx, o.Namespace)
	if err != nil {
		return "", err
	}
	rel.inventory = old
	prune, err := kube.PrunePlan(ctx, old, append(slices.Clone(rel.applied), ps.Object()))
	if err != nil {
		return "", err
	}
	rel.plan = append(plan, prune...)
	if o.DryRun {
		act := cluster.Create
		if !nsMissing {
			if act, err = kube.SecretAction(ctx, ps); err != nil {
				return "", err
			}
		}
		rel.r.Report(report.Event{Time: time.Now(), Kind: report.Info, Stage: "plan", Message: "Secret/" + o.Namespace + "/" + o.SecretName + ": " + string(act) + " (data not shown)"})
		rel.showPlan(rel.plan)
		return fmt.Sprintf("dry run: %s; nothing was changed", planCounts(rel.plan)), nil
	}
	if o.NoRecreate {
		// Refuse before the first write, not halfway through the apply.
		if _, err := kube.Execute(ctx, filterRecreate(rel.plan), cluster.ApplyOptions{NoRecreate: true}, nil); err != nil {
			return "", err
		}
	}
	st, err := kube.ApplySecret(ctx, ps, false)
	if err != nil {
		return "", err
	}
	rel.res.Objects = append(rel.res.Objects, cluster.Applied{Ref: "Secret/" + o.Namespace + "/" + o.SecretName, Status: st})
	// Objects whose admission needs others of the manifest (a Pod and its
	// ServiceAccount) are validated once those exist.
	needed, err := kube.CreateNeeded(ctx, rel.plan, cluster.ApplyOptions{ForceConflicts: o.Force}, rel.announce("secret"))
	rel.res.Objects = append(rel.res.Objects, needed...)
	if err != nil {
		rel.recordPartial(ctx, needed)
		return "", err
	}
	return fmt.Sprintf("namespace %s, Secret %s %s, %d objects valid: %s", o.Namespace, o.SecretName, st, len(rel.applied), planCounts(rel.plan)), nil
}

// apply carries out the plan: creates, updates, Pod recreations and
// prunes; then records what this release applied in the inventory.
func (rel *release) apply(ctx context.Context) (string, error) {
	applied, err := rel.kube.Execute(ctx, rel.plan, cluster.ApplyOptions{ForceConflicts: rel.o.Force, NoRecreate: rel.o.NoRecreate}, rel.announce("apply"))
	rel.res.Objects = append(rel.res.Objects, applied...)
	counts := map[cluster.Status]int{}
	for _, a := range applied {
		counts[a.Status]++
		rel.r.Report(report.Event{Time: time.Now(), Kind: report.Info, Stage: "apply", Message: a.Ref + " " + string(a.Status)})
	}
	if err != nil {
		rel.recordPartial(ctx, applied)
		return "", err
	}
	entries := []cluster.Entry{cluster.EntryOf(cluster.PullSecret{Namespace: rel.o.Namespace, Name: rel.o.SecretName}.Object())}
	for _, obj := range rel.applied {
		entries = append(entries, cluster.EntryOf(obj))
	}
	if err := rel.kube.WriteInventory(ctx, rel.o.Namespace, entries); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d created, %d configured, %d recreated, %d pruned, %d unchanged",
		counts[cluster.Created], counts[cluster.Configured], counts[cluster.Recreated], counts[cluster.Pruned], counts[cluster.Unchanged]), nil
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
	_ = rel.kube.WriteInventory(wctx, rel.o.Namespace, entries) // the apply's own error is the one to report
}

func (rel *release) announce(stage string) func(string) {
	return func(msg string) {
		rel.r.Report(report.Event{Time: time.Now(), Kind: report.Info, Stage: stage, Message: msg})
	}
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

func planCounts(plan []cluster.Change) string {
	counts := map[cluster.Action]int{}
	for _, ch := range plan {
		counts[ch.Action]++
	}
	return fmt.Sprintf("%d to create, %d to update, %d to recreate, %d to prune, %d unchanged",
		counts[cluster.Create]+counts[cluster.Unchecked]+counts[cluster.Deferred], counts[cluster.Update], counts[cluster.Recreate], counts[cluster.Delete], counts[cluster.NoChange])
}

func filterRecreate(plan []cluster.Change) []cluster.Change {
	var out []cluster.Change
	for _, ch := range plan {
		if ch.Action == cluster.Recreate {
			out = append(out, ch)
		}
	}
	return out
}

func (rel *release) wait(ctx context.Context) (string, error) {
	pods := manifest.Pods(rel.applied)
	w, err := rel.kube.Wait(ctx, rel.o.Namespace, rel.applied, cluster.WaitOptions{
		Timeout: rel.o.Timeout,
		OnChange: func(states []cluster.PodState) {
			for _, s := range states {
				rel.r.Report(report.Event{Time: time.Now(), Kind: report.Info, Stage: "wait", Message: s.String()})
			}
		},
		OnObjects: func(states []cluster.ObjectState) {
			for _, s := range states {
				rel.r.Report(report.Event{Time: time.Now(), Kind: report.Info, Stage: "wait", Message: s.String()})
			}
		},
	})
	rel.res.Pods, rel.res.Rollouts = w.Pods, w.Objects
	if err != nil {
		for _, s := range w.Pods {
			for _, e := range s.Events {
				rel.r.Report(report.Event{Time: time.Now(), Kind: report.Info, Stage: "wait", Message: "Pod " + s.Name + " event: " + e})
			}
		}
		return "", err
	}
	summary := fmt.Sprintf("%d/%d Pods Ready in %s", len(pods), len(pods), rel.o.Namespace)
	if n := len(w.Objects); n > 0 {
		summary += fmt.Sprintf(", %d/%d objects current", n, n)
	}
	return summary, nil
}

// transform applies the release's transforms, the images by digest when
// pin and a digest is known (else by tag). Kinds defined by --crds count as
// namespaced or not by the CRD's scope, so the transform works before the
// CRDs are applied.
func (rel *release) transform(pin bool) ([]manifest.Object, error) {
	images := map[string]string{rel.o.Build.Name: rel.tag.String()}
	if pin && rel.res.Digest != "" {
		images[rel.o.Build.Name] = rel.res.Ref
	}
	for _, e := range rel.extras {
		images[e.Name] = e.Image.Image
		if pin && e.Ref != "" {
			images[e.Name] = e.Ref
		}
	}
	crdScope := map[schema.GroupKind]bool{}
	for _, c := range rel.crds {
		g, _, _ := unstructuredString(c, "spec", "group")
		k, _, _ := unstructuredString(c, "spec", "names", "kind")
		scope, _, _ := unstructuredString(c, "spec", "scope")
		crdScope[schema.GroupKind{Group: g, Kind: k}] = scope == "Namespaced"
	}
	scoper := manifest.ScoperFunc(func(gvk schema.GroupVersionKind) (bool, error) {
		if namespaced, ok := crdScope[gvk.GroupKind()]; ok {
			return namespaced, nil
		}
		return rel.kube.Namespaced(gvk)
	})
	objs, err := manifest.Transform(rel.objs, manifest.Options{
		Namespace:  rel.o.Namespace,
		Images:     images,
		PullSecret: rel.o.SecretName,
		Scoper:     scoper,
	})
	if err != nil {
		return nil, err
	}
	return objs, nil
}

// registryDigest is what the tag resolves to in the registry now.
func (rel *release) registryDigest(ctx context.Context, tag name.Tag) (string, error) {
	opts, err := rel.o.Access.Options(ctx)
	if err != nil {
		return "", err
	}
	d, err := remote.Head(tag, opts...)
	if err != nil {
		return "", err
	}
	return d.Digest.String(), nil
}

// parseImage reads o.Image for Deploy.
func (rel *release) parseImage() error {
	img := rel.o.Image
	if img == "" {
		return fail.New(fail.Usage, "pass --image REGISTRY/OWNER/NAME:VERSION[@sha256:…]", "no image to deploy")
	}
	tagPart, digest, _ := strings.Cut(img, "@")
	tag, err := name.NewTag(tagPart, name.StrictValidation)
	if err != nil {
		return fail.New(fail.Usage, "pass --image REGISTRY/OWNER/NAME:VERSION[@sha256:…] in lowercase", "invalid image reference %q: %v", img, err)
	}
	if digest != "" {
		if _, err := name.NewDigest(tag.Context().String() + "@" + digest); err != nil {
			return fail.New(fail.Usage, "give the digest as sha256: and 64 hex digits", "invalid digest in %q", img)
		}
	}
	rel.tag = tag
	rel.res.Image, rel.res.Digest = tag.String(), digest
	rel.res.Ref = tag.String()
	if digest != "" {
		rel.res.Ref = registry.Describe(tag, digest)
	}
	return nil
}

// Tag is <registry>/<owner>/<name>:<version>, owner lowercased.
func Tag(registryHost, owner, image, version string) (name.Tag, error) {
	repo, err := registry.Repository(registryHost, owner, image)
	if err != nil {
		return name.Tag{}, err
	}
	if strings.ContainsAny(version, "/@: ") || version == "" {
		return name.Tag{}, fail.New(fail.Usage, "pass a plain --version such as 0.4.0", "invalid image version %q", version)
	}
	return repo.Tag(version), nil
}
