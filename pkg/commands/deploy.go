package commands

import (
	"context"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/pipeline"
)

// deployOptions are deploy's (and diff's) flag groups. The registry group
// serves the pull Secret (the token), resolving a tag to its digest and
// --verify-key's signature check (--registry-ca, --jobs).
type deployOptions struct {
	g        *options.GlobalOptions
	img      options.ImageOptions
	image    string // --image
	registry options.RegistryOptions
	policy   options.PolicyOptions
	sigstore options.SigstoreOptions
	kube     *options.KubeOptions
	cluster  options.ClusterOptions
	history  options.HistoryOptions
	diff     bool // a dry run whose exit status says whether anything would change
}

func newDeployCommand(env Env, g *options.GlobalOptions) *cobra.Command {
	o := &deployOptions{g: g, kube: options.NewKubeOptions()}
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Deploy a pushed image: namespace, pull Secret, apply the manifest, wait for the Pods",
		Example: `  idopipe deploy --image ghcr.io/my-org/planner:0.4.0@sha256:… -n ido \
    --manifest deploy/manifest.yaml --crds artefacts/intents_crds_v1alpha1.yaml
  idopipe deploy --image ghcr.io/my-org/planner:0.4.0 --verify-key cosign.pub   # only if its digest is signed`,
		Args: usageArgs(cobra.NoArgs),
		RunE: runCommand(env, g, o),
	}
	o.addFlags(cmd, options.ClusterFlags{DryRun: true, Writes: true})
	return cmd
}

func (o *deployOptions) addFlags(cmd *cobra.Command, with options.ClusterFlags) {
	fs := cmd.Flags()
	o.img.AddNameFlag(fs)
	o.registry.AddFlags(fs, options.RegistryFlags{Jobs: true})
	o.kube.AddFlags(fs)
	o.cluster.AddFlags(fs, with)
	o.policy = options.NewPolicyOptions(&o.sigstore)
	o.policy.AddFlags(fs)
	o.sigstore.AddFlags(fs, options.SigstoreFlags{})
	if with.Writes {
		o.history.AddFlags(fs, options.HistoryFlags{RollbackOnFailure: true})
	}
	fs.StringVar(&o.image, "image", "", "the pushed image, REGISTRY/OWNER/NAME:VERSION[@sha256:…]")
}

// Complete reads the environment's defaults.
func (o *deployOptions) Complete(env Env) {
	o.registry.Complete(env.Getenv)
	o.cluster.Complete(env.Getenv)
	o.history.Complete(env.Getenv)
	if o.diff {
		o.cluster.DryRun = true
	}
}

// Validate checks every group; --registry-ca is read now, so a wrong path
// fails although a deploy by digest might not reach the registry.
func (o *deployOptions) Validate() error {
	return validateAll(o.img.Validate, o.registry.Validate, o.sigstore.Validate, o.policy.Validate, o.kube.Validate, o.cluster.Validate, o.history.Validate)
}

// Run resolves the token for the image's registry and runs pipeline.Deploy.
func (o *deployOptions) Run(ctx context.Context, env Env) error {
	g := o.g
	cr, r, err := credentialed(env, g, &o.registry, registryOf(o.image))
	if err != nil {
		return finish(env, g, r, "", nil, err)
	}
	po := o.pipelineOptions()
	po.Creds = cr
	po.History = history(ctx, &o.history, "")
	po.RollbackOnFailure = o.history.RollbackOnFailure
	deps := wiring{kube: o.kube, registry: &o.registry, creds: &cr}.deps()
	res, err := pipeline.Deploy(ctx, po, deps, r)
	if o.diff {
		return finish(env, g, r, diffSummary(res), res, diffStatus(res.Changes, err))
	}
	return finish(env, g, r, releaseSummary(res, po), res, err)
}

func (o *deployOptions) pipelineOptions() pipeline.Options {
	return pipeline.Options{
		Images: []build.Spec{{Name: o.img.Name}},
		Deploy: deployConfig(o.kube, &o.cluster),
		DryRun: o.cluster.DryRun,
		Policy: o.policy.Policy,
		Image:  o.image,
	}
}

// registryOf is the registry host of an image reference, "" when it does not parse.
func registryOf(image string) string {
	ref, err := name.ParseReference(image)
	if err != nil {
		return ""
	}
	return ref.Context().RegistryStr()
}
