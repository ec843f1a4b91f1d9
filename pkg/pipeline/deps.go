package pipeline

import (
	"context"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/manifest"
	"github.com/idopipe/idopipe/pkg/publish"
	"github.com/idopipe/idopipe/pkg/sign"
	"github.com/idopipe/idopipe/pkg/verify"
)

// Deps are the collaborators the stages call, each behind a small
// interface (as ko's build.Interface and publish.Interface), so that the
// pipeline's own logic (order, selection, resume, checks alongside the
// build, interrupts, what a rerun skips) is tested without the stack.
// pkg/commands/wire.go makes the real ones.
type Deps struct {
	Builder   Builder   // build.NewBuilder
	Publisher Publisher // publish.New
	Signer    Signer    // sign.NewImageSigner; nil: nothing is signed
	Verifier  Verifier  // verify.New
	// Connect reaches the cluster (Connector); nil when no cluster is
	// configured, which the cluster stages refuse.
	Connect func(ctx context.Context) (Cluster, error)
}

// Builder builds images: the build stage.
type Builder interface {
	// Build builds specs and returns their results in the same order.
	Build(ctx context.Context, specs []build.Spec) ([]build.Result, error)
}

// Publisher talks to the registry the images are pushed to.
type Publisher interface {
	// Digest is what tag resolves to now (fail.NotFound when it does not).
	Digest(ctx context.Context, tag name.Tag) (string, error)
	// Preflight proves the credentials may push to repo, writing nothing.
	Preflight(ctx context.Context, repo name.Repository) error
	// Publish pushes the image with digest from the OCI layout to tag.
	Publish(ctx context.Context, layout, digest string, tag name.Tag, opts ...publish.Option) (name.Digest, publish.Stats, error)
	// Has checks that the registry still has ref (fail.NotFound when not).
	Has(ctx context.Context, ref name.Digest) error
}

// Signer signs a pushed digest.
type Signer interface {
	Sign(ctx context.Context, ref name.Digest) (sign.Result, error)
}

// Verifier checks pushed images.
type Verifier interface {
	// Pull checks that tag resolves to digest and that it pulls.
	Pull(ctx context.Context, tag name.Tag, digest string) (verify.Report, error)
	// Signed checks that the policy accepts a signature over ref.
	Signed(ctx context.Context, ref name.Digest, p sign.Policy) (sign.Verified, error)
}

// Cluster is the API server as the cluster stages use it: what checks
// asks, what the plan reads, what secret and apply write, and the wait.
type Cluster interface {
	Host() string
	// WhoAmI names the user the API server knows this client as.
	WhoAmI(ctx context.Context) string
	// LockLost is the error of a release lock lost, nil while held.
	LockLost() error
	ClusterChecker
	ClusterPlanner
	ClusterWriter
	ClusterWaiter
}

// ClusterChecker answers the checks that run alongside the build.
type ClusterChecker interface {
	CheckTarget(ctx context.Context, ns, secret string) error
	Namespaced(gvk schema.GroupVersionKind) (bool, error)
}

// ClusterPlanner is the dry run: what apply would do, changing nothing.
type ClusterPlanner interface {
	Plan(ctx context.Context, objs []manifest.Object, o cluster.ApplyOptions) ([]cluster.Change, error)
	NamespaceMissing(ctx context.Context, ns string) (bool, error)
	SecretAction(ctx context.Context, p cluster.PullSecret) (cluster.Action, error)
	Inventory(ctx context.Context, ns string) ([]cluster.Entry, error)
	PrunePlan(ctx context.Context, old []cluster.Entry, objs []manifest.Object) ([]cluster.Change, error)
	Revisions(ctx context.Context, ns string) ([]cluster.Revision, error)
	RevisionObjects(ctx context.Context, ns string, n int) (cluster.Revision, []manifest.Object, error)
}

// ClusterWriter changes the cluster.
type ClusterWriter interface {
	EnsureNamespace(ctx context.Context, ns string) (created bool, err error)
	DeleteNamespace(ctx context.Context, ns string) error
	Lock(ctx context.Context, ns, holder string, wait time.Duration, waiting func(string)) (unlock func(), err error)
	WaitEstablished(ctx context.Context, names []string, timeout time.Duration) error
	ApplySecret(ctx context.Context, p cluster.PullSecret, dryRun bool) (cluster.Status, error)
	Execute(ctx context.Context, plan []cluster.Change, o cluster.ApplyOptions, announce func(string)) ([]cluster.Applied, error)
	CreateNeeded(ctx context.Context, plan []cluster.Change, o cluster.ApplyOptions, announce func(string)) ([]cluster.Applied, error)
	WriteInventory(ctx context.Context, ns string, entries []cluster.Entry) error
	RecordRevision(ctx context.Context, rev cluster.Revision, objs []manifest.Object, max int) (cluster.Revision, error)
	SetRevisionStatus(ctx context.Context, ns string, n int, st cluster.RevisionStatus, reason string) error
}

// ClusterWaiter follows what was applied until it is current.
type ClusterWaiter interface {
	Wait(ctx context.Context, ns string, objs []manifest.Object, o cluster.WaitOptions) (cluster.Waited, error)
}

// Connector reaches the cluster that kubectl's flags (--kubeconfig,
// --context, ...) name.
func Connector(getter genericclioptions.RESTClientGetter) func(context.Context) (Cluster, error) {
	return func(ctx context.Context) (Cluster, error) {
		c, err := cluster.New(ctx, getter)
		if err != nil {
			return nil, err
		}
		return kube{c}, nil
	}
}

// kube is a *cluster.Client as a Cluster.
type kube struct{ *cluster.Client }

func (k kube) Host() string { return k.Client.Host }
