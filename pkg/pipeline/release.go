package pipeline

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
	"github.com/idopipe/idopipe/pkg/names"
	"github.com/idopipe/idopipe/pkg/registry"
	"github.com/idopipe/idopipe/pkg/report"
)

// Release runs the stages of the table that o.Stages selects: build,
// push, verify-pull, secret, apply, wait (validate and checks always; with
// o.DryRun validate, checks and plan only).
func Release(ctx context.Context, o Options, d Deps, r report.Reporter) (Result, error) {
	names, err := o.Stages.selected()
	if err != nil {
		return Result{Stages: map[string]float64{}}, err
	}
	if len(o.Images) > 0 && o.Images[0].Layout == "" {
		dir, err := os.MkdirTemp("", "idopipe-oci-")
		if err != nil {
			return Result{Stages: map[string]float64{}}, fail.Wrap(fail.Internal, err, "", "cannot make a temporary directory")
		}
		defer os.RemoveAll(dir)
		o.Images[0].Layout = dir
	}
	return run(ctx, o, d, r, scope{selected: names, dryRun: o.DryRun})
}

// Deploy runs the cluster stages for an image that is already pushed
// (o.Image): validate, checks, secret, apply, wait (or plan, with
// o.DryRun).
func Deploy(ctx context.Context, o Options, d Deps, r report.Reporter) (Result, error) {
	return run(ctx, o, d, r, scope{selected: StageNames, dryRun: o.DryRun, deploy: true})
}

// Push pushes (and with d.Signer signs) images built earlier: o.Images[i]
// from built[i], its Layout and Digest. It is the release's push stage on
// its own, reported as the stage push.
func Push(ctx context.Context, o Options, d Deps, built []build.Result, r report.Reporter) (Result, error) {
	rel := newRelease(o, d, r, scope{selected: []string{"push"}})
	err := RunStage(ctx, "push", func(ctx context.Context) (string, error) {
		if err := rel.nameImages(); err != nil {
			return "", err
		}
		if len(built) != len(rel.images) {
			return "", fail.New(fail.Internal, "", "%d images to push, %d built", len(rel.images), len(built))
		}
		for i, img := range rel.images {
			img.built = built[i]
		}
		return rel.push(ctx)
	}, r)
	return rel.res, err
}

func run(ctx context.Context, o Options, d Deps, r report.Reporter, s scope) (Result, error) {
	rel := newRelease(o, d, r, s)
	err := Run(ctx, stagesOf(s, rel), r, rel.res.Stages)
	err = rel.lockLost(err)
	if err != nil && rel.waitFailed && o.RollbackOnFailure && ctx.Err() == nil {
		err = rel.rollBackAfter(ctx, err)
	}
	rel.done(err)
	return rel.res, err
}

// release carries values from stage to stage: each stage reads what the
// ones before it left here, and leaves its own result.
type release struct {
	o     Options
	d     Deps
	r     report.Reporter
	scope scope
	res   Result

	images []*image // Options.Images on their way through the stages

	objs    []manifest.Object // decoded manifests
	crds    []manifest.Object
	applied []manifest.Object // transformed, in apply order
	plan    []cluster.Change  // what apply will do, from the dry run
	kube    Cluster
	// inventory is what earlier releases recorded in the namespace.
	inventory []cluster.Entry
	unlock    func() // releases the namespace's release lock
	lockHeld  bool   // the lock is held already (a rollback after a failure)
	nsMade    bool   // this run created the namespace
	gated     bool   // the signature Policy accepted every image

	revision   *cluster.Revision // what this run recorded (apply)
	rollbackTo *cluster.Revision // for a rollback: the revision it redeploys
	waitFailed bool              // the wait failed: the Pods did not become Ready
}

// image is one image of the release.
type image struct {
	spec  build.Spec
	tag   name.Tag
	built build.Result
	Image // what the result says of it
}

func newRelease(o Options, d Deps, r report.Reporter, s scope) *release {
	return &release{o: o, d: d, r: r, scope: s, res: Result{Stages: map[string]float64{}}}
}

// done settles the revision (a run that ended before its wait failed)
// and releases what the run holds.
func (rel *release) done(err error) {
	if err == nil {
		err = fail.New(fail.Interrupted, "", "the run ended before its wait")
	}
	rel.settleRevision(context.Background(), err)
	if rel.unlock != nil {
		rel.unlock()
	}
}

// lockLost is err, or the lost lock's error when the lock was lost: that,
// not the failed request it caused, is why the run stopped.
func (rel *release) lockLost(err error) error {
	if err == nil || rel.kube == nil {
		return err
	}
	if lost := rel.kube.LockLost(); lost != nil {
		return lost
	}
	return err
}

// noCluster: no cluster stage runs, as in a CI job without a kubeconfig:
// no manifests are read, no cluster is asked.
func (rel *release) noCluster() bool { return !rel.scope.cluster() }

// nameImages gives each image its tag, once: from the image's name and
// version, or for Deploy from Options.Image.
func (rel *release) nameImages() error {
	if rel.images != nil {
		return nil
	}
	if len(rel.o.Images) == 0 {
		return fail.New(fail.Internal, "", "no image in the release's options")
	}
	if rel.scope.deploy {
		img, err := parseImage(rel.o.Image, rel.o.Images[0].Name)
		if err != nil {
			return err
		}
		rel.images = []*image{img}
		rel.record()
		return nil
	}
	var images []*image
	for _, spec := range rel.o.Images {
		if spec.Layout == "" {
			spec.Layout = rel.o.Images[0].Layout
		}
		tag, err := Tag(rel.o.Target.Registry, rel.o.Target.Owner, spec.Name, spec.Version)
		if err != nil {
			return err
		}
		images = append(images, &image{spec: spec, tag: tag, Image: Image{Name: spec.Name, Image: tag.String()}})
	}
	rel.images = images
	return nil
}

// setDigest records what digest an image is (built and pushed, or found
// in the registry).
func (img *image) setDigest(digest string) {
	img.Digest, img.Ref = digest, registry.Describe(img.tag, digest)
}

// record puts the images into the result: the first one's tag, digest and
// reference, and the others as Extra, once their digest is known (for
// Deploy, the image as given).
func (rel *release) record() {
	if len(rel.images) == 0 {
		return
	}
	main := rel.images[0]
	if main.Digest != "" || rel.scope.deploy {
		rel.res.Image, rel.res.Digest, rel.res.Ref, rel.res.Blobs, rel.res.Platforms = main.Image.Image, main.Digest, main.Ref, main.Blobs, main.Platforms
		if main.Ref == "" {
			rel.res.Ref = main.Image.Image
		}
	}
	rel.res.Extra = nil
	for _, img := range rel.images[1:] {
		if img.Digest != "" {
			rel.res.Extra = append(rel.res.Extra, img.Image)
		}
	}
}

func (rel *release) announce(stage string) func(string) {
	return func(msg string) {
		rel.r.Report(report.Event{Time: time.Now(), Kind: report.Info, Stage: stage, Message: msg})
	}
}

// parseImage reads Deploy's --image: a tag, or a tag with its digest.
func parseImage(ref, imageName string) (*image, error) {
	if ref == "" {
		return nil, fail.New(fail.Usage, "pass --image REGISTRY/OWNER/NAME:VERSION[@sha256:…]", "no image to deploy")
	}
	tagPart, digest, _ := strings.Cut(ref, "@")
	tag, err := name.NewTag(tagPart, name.StrictValidation)
	if err != nil {
		return nil, fail.New(fail.Usage, "pass --image REGISTRY/OWNER/NAME:VERSION[@sha256:…] in lowercase", "invalid image reference %q: %v", ref, err)
	}
	if digest != "" {
		if _, err := name.NewDigest(tag.Context().String() + "@" + digest); err != nil {
			return nil, fail.New(fail.Usage, "give the digest as sha256: and 64 hex digits", "invalid digest in %q", ref)
		}
	}
	img := &image{tag: tag, spec: build.Spec{Name: imageName}, Image: Image{Name: imageName, Image: tag.String()}}
	if digest != "" {
		img.setDigest(digest)
	}
	return img, nil
}

// Tag is <registry>/<owner>/<name>:<version>, owner lowercased.
func Tag(registryHost, owner, image, version string) (name.Tag, error) {
	repo, err := registry.Repository(registryHost, owner, image)
	if err != nil {
		return name.Tag{}, err
	}
	if err := names.Tag("version", version); err != nil {
		return name.Tag{}, err
	}
	return repo.Tag(version), nil
}
