package pipeline

import (
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/publish"
	"github.com/idopipe/idopipe/pkg/sign"
	"github.com/idopipe/idopipe/pkg/verify"
)

// Options are what a run is asked to do: values only, resolved by the
// commands from flags, $IDOPIPE_* and the config file. The collaborators
// that do the work (BuildKit, the registry, the cluster) are in Deps.
type Options struct {
	// Images of the release: the main one (the planner, --image-name)
	// first, then the --extra-image ones. Each is built, pushed as
	// <Target.Registry>/<Target.Owner>/<Name>:<Version> and put into the
	// containers that run an image of that name. An image without a Layout
	// uses the first one's. Deploy uses the first one's Name only.
	Images []build.Spec
	Target Target
	Deploy DeployConfig
	Stages Selection // --from, --to, --skip
	DryRun bool      // validate and plan; build, push and write nothing
	// Creds is the registry token: the pull Secret's content.
	Creds creds.Credentials
	// Policy, when not empty, must accept a signature over each image's
	// digest (a key's, or a keyless certificate's identity); checked
	// before the first write to the cluster.
	Policy sign.Policy
	// Image, for Deploy only: the pushed image (tag, or tag@digest) that
	// replaces the manifest's image named Images[0].Name.
	Image string

	// History is what the revision record of a run that writes says of it
	// and how many records are kept.
	History History
	// Rollback, for Rollback only: which revision to return to.
	Rollback RollbackConfig
	// RollbackOnFailure: when the wait of a Release or Deploy fails, roll
	// back to the revision deployed before, wait for it, and still fail
	// with the wait's error (saying what runs now).
	RollbackOnFailure bool
}

// History is what a revision records besides what the run itself knows
// (images, digests, signature, objects), and how many are kept.
type History struct {
	Max    int // revisions kept in the namespace (0: every one)
	Source cluster.Source
	GitHub *cluster.GitHubRun // the GitHub Actions run, nil outside Actions
}

// RollbackConfig says which revision a rollback returns to.
type RollbackConfig struct {
	// Revision to redeploy; 0: the newest one before the current that was
	// deployed.
	Revision int
}

// Target is where the images are pushed.
type Target struct {
	Registry string // e.g. ghcr.io; for Rollback, the registry the revision's images must be on

	Owner string   // lowercased for the repository path
	Tags  []string // extra tags for each pushed image
	// MountFrom are repositories of the registry that may hold blobs of the
	// images; the images pushed earlier in the run are added for the later
	// ones. The registry mounts what they hold instead of an upload.
	MountFrom []name.Repository
}

// DeployConfig is what the cluster stages apply, where, and how.
type DeployConfig struct {
	Manifests  []string // manifest files, applied in order
	CRDs       []string // CRD files, applied and Established first
	Namespace  string
	SecretName string
	Pin        bool // reference the images by digest in the Pods
	Force      bool // --force-conflicts
	NoRecreate bool // refuse to delete and recreate changed Pods

	Timeout time.Duration // for every object to become current

	// LockHolder names this run in the namespace's release Lease, which the
	// cluster stages hold so that two releases cannot interleave; a second
	// one waits up to LockTimeout.
	LockHolder  string
	LockTimeout time.Duration
}

// Result is what a run produced.
type Result struct {
	Image  string         `json:"image"`           // tag
	Digest string         `json:"digest"`          // sha256:…
	Ref    string         `json:"ref"`             // tag@digest
	Blobs  *publish.Stats `json:"blobs,omitempty"` // what the push did; none when the image was there already
	// Platforms are the main image's platform images as built: each
	// one's digest, and the builder that built it when the build dialed
	// one (a builder per platform in a cluster).
	Platforms []build.Image      `json:"platforms,omitempty"`
	Verify    *verify.Report     `json:"verify,omitempty"`
	Extra     []Image            `json:"extraImages,omitempty"` // the images after the first, pushed
	Objects   []cluster.Applied  `json:"objects,omitempty"`
	Pods      []cluster.PodState `json:"pods,omitempty"`
	// Rollouts are the other objects the wait followed (Deployments, Jobs,
	// custom resources), with their kstatus.
	Rollouts []cluster.ObjectState `json:"rollouts,omitempty"`
	Stages   map[string]float64    `json:"stages"` // seconds per stage

	// Changes, after a dry run, counts what a deploy would change: plan
	// entries other than unchanged, and the pull Secret when it would be
	// created or updated.
	Changes int `json:"changes"`

	// Signed is what the push stage signed; Signature the check of
	// the Policy (who signed the digest).
	Signed    []*sign.Result `json:"signed,omitempty"`
	Signature *sign.Verified `json:"signature,omitempty"`

	// Revision is the record this run wrote (its number and status), nil
	// when it wrote none.
	Revision *cluster.Revision `json:"revision,omitempty"`
	// RolledBack is the rollback that followed a failed wait
	// (RollbackOnFailure): to which revision, and what it left running.
	RolledBack *RolledBack `json:"rolledBack,omitempty"`
}

// RolledBack is what a rollback after a failure did.
type RolledBack struct {
	To       int                `json:"to"`       // the revision redeployed
	Revision int                `json:"revision"` // the rollback's own revision
	Ref      string             `json:"ref"`      // its main image, by digest
	Pods     []cluster.PodState `json:"pods,omitempty"`
	Error    string             `json:"error,omitempty"` // why the rollback failed too
}

// Image is one more image of a release: its tag, digest and reference.
type Image struct {
	Name   string `json:"name"`
	Image  string `json:"image"`
	Digest string `json:"digest"`
	Ref    string `json:"ref"`
	// Blobs: what the push did; none when the image was there already.
	Blobs *publish.Stats `json:"blobs,omitempty"`
	// Platforms are its platform images as built (see Result.Platforms).
	Platforms []build.Image `json:"platforms,omitempty"`
}
