package commands

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/pipeline"
)

// releaseOptions are release's flag groups.
type releaseOptions struct {
	g        *options.GlobalOptions
	img      options.ImageOptions
	build    options.BuildOptions
	buildkit options.BuildKitOptions
	progress options.ProgressOptions
	registry options.RegistryOptions
	push     options.PushOptions
	sigstore options.SigstoreOptions
	sign     options.SignOptions
	policy   options.PolicyOptions
	kube     *options.KubeOptions
	cluster  options.ClusterOptions
	history  options.HistoryOptions
	stages   options.StagesOptions
}

// releaseLong is release's help: the stages from the pipeline's table.
func releaseLong() string {
	return `release runs the pipeline's stages in order, each reported as it starts and ends:

` + pipeline.StagesHelp() + `
--from, --to and --skip select among ` + strings.Join(pipeline.StageNames, ", ") + `
(validate always runs); --dry-run runs validate and plan only.`
}

func newReleaseCommand(env Env, g *options.GlobalOptions) *cobra.Command {
	o := &releaseOptions{g: g, kube: options.NewKubeOptions()}
	o.sign, o.policy = options.NewSignOptions(&o.sigstore), options.NewPolicyOptions(&o.sigstore)
	cmd := &cobra.Command{
		Use:   "release",
		Short: "Run every stage: build, push, verify-pull, secret, apply, wait",
		Long:  releaseLong(),
		Example: `  # the whole guide in one command (token from $GITHUB_TOKEN or .github-token)
  idopipe release --source ~/src/intent-driven-orchestration --owner my-org \
    --manifest deploy/manifest.yaml --crds artefacts/intents_crds_v1alpha1.yaml
  # sign what is pushed, and deploy it only if the signature checks out
  COSIGN_PASSWORD=… idopipe release --owner my-org --provenance min --sign --key cosign.key --verify-key cosign.pub
  # in a GitHub Actions job with id-token: write: sign keyless, deploy only what this workflow signed
  idopipe release --owner my-org --sign --certificate-identity-regexp '^https://github.com/my-org/ido/.github/workflows/release.yml@'`,
		Args: usageArgs(cobra.NoArgs),
		RunE: runCommand(env, g, o),
	}
	fs := cmd.Flags()
	o.img.AddFlags(fs)
	o.build.AddFlags(fs, options.BuildFlags{Extras: true})
	o.buildkit.AddFlags(fs)
	o.progress.AddFlags(fs, options.BuildProgressHelp)
	o.registry.AddFlags(fs, options.RegistryFlags{Target: true, Jobs: true})
	o.push.AddFlags(fs)
	o.kube.AddFlags(fs)
	o.cluster.AddFlags(fs, options.ClusterFlags{DryRun: true, Writes: true})
	o.history.AddFlags(fs, options.HistoryFlags{RollbackOnFailure: true})
	o.sign.AddFlags(fs)
	o.policy.AddFlags(fs)
	o.sigstore.AddFlags(fs, options.SigstoreFlags{Signing: true})
	o.stages.AddFlags(fs)
	return cmd
}

// Complete reads the environment's defaults.
func (o *releaseOptions) Complete(env Env) {
	o.build.Complete(env.Getenv)
	o.buildkit.Complete(env.Getenv)
	o.registry.Complete(env.Getenv)
	o.sign.Complete(env.Getenv)
	o.cluster.Complete(env.Getenv)
	o.history.Complete(env.Getenv)
}

// Validate checks every group: a bad value costs no build.
func (o *releaseOptions) Validate() error {
	return validateAll(o.img.Validate, func() error { return o.build.Validate(o.img) }, o.buildkit.Validate, o.progress.Validate,
		o.registry.Validate, func() error { return o.push.Validate(o.registry.Registry) }, o.sigstore.Validate, o.sign.Validate,
		o.policy.Validate, o.kube.Validate, o.cluster.Validate, o.history.Validate, o.stages.Validate)
}

// Run resolves the token, loads the signing key and runs pipeline.Release.
func (o *releaseOptions) Run(ctx context.Context, env Env) error {
	g := o.g
	cr, r, err := credentialed(env, g, &o.registry, o.registry.Registry)
	if err != nil {
		return finish(env, g, r, "", nil, err)
	}
	images, err := o.build.Specs(o.img, g.CacheDir)
	if err != nil {
		return finish(env, g, r, "", nil, err)
	}
	note := o.build.DefaultCache(images, o.buildkit.InCluster(), o.registry.Registry, o.registry.Owner)
	bar, err := pushProgress(env, g, o.progress.Mode)
	if err != nil {
		return finish(env, g, r, "", nil, err)
	}
	signer, err := o.sign.ImageSigner(ctx, o.registry.Access(&cr))
	if err != nil {
		return finish(env, g, r, "", nil, err)
	}
	po := pipeline.Options{
		Images: images,
		Target: target(&o.registry, &o.push),
		Deploy: deployConfig(o.kube, &o.cluster),
		Stages: o.stages.Selection,
		DryRun: o.cluster.DryRun,
		Creds:  cr,
		Policy: o.policy.Policy,

		History:           history(ctx, &o.history, images[0].Context),
		RollbackOnFailure: o.history.RollbackOnFailure,
	}
	bc := newBuildCredentials(o.registry.Registry, images, func() (creds.Credentials, error) { return cr, nil })
	deps := wiring{
		builder:  builder(env, g, &o.buildkit, &o.build, o.progress.Mode, bc, o.kube.Flags, note),
		signer:   signer,
		progress: bar,
		kube:     o.kube,
		registry: &o.registry,
		creds:    &cr,
	}.deps()
	res, err := pipeline.Release(ctx, po, deps, r)
	if gerr := writeGitHubResult(g, res, po.Deploy.Namespace, err); gerr != nil && err == nil {
		err = gerr
	}
	return finish(env, g, r, releaseSummary(res, po), res, err)
}

// releaseSummary is the one line a release or deploy ends with.
func releaseSummary(res pipeline.Result, o pipeline.Options) string {
	if o.DryRun {
		return "dry run: nothing was built, pushed or changed"
	}
	ns := o.Deploy.Namespace
	ready := 0
	var names []string
	for _, p := range res.Pods {
		if p.Ready {
			ready++
		}
		names = append(names, p.Name)
	}
	total := 0.0
	for _, s := range res.Stages {
		total += s
	}
	if len(res.Pods) == 0 && len(res.Objects) == 0 {
		return fmt.Sprintf("released %s in %.1fs; no cluster stage ran", res.Ref, total)
	}
	return fmt.Sprintf("released %s to namespace %s: %d/%d Pods Ready (%s) in %.1fs",
		res.Ref, ns, ready, len(res.Pods), strings.Join(names, ", "), total)
}
