package commands

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/pipeline"
	"github.com/idopipe/idopipe/pkg/publish"
	"github.com/idopipe/idopipe/pkg/sign"
)

// pushOptions are push's flag groups and its own flags: the layout
// `idopipe build` wrote and the digest in it.
type pushOptions struct {
	g        *options.GlobalOptions
	img      options.ImageOptions
	registry options.RegistryOptions
	push     options.PushOptions
	sigstore options.SigstoreOptions
	sign     options.SignOptions
	progress options.ProgressOptions
	layout   string
	digest   string
}

func newPushCommand(env Env, g *options.GlobalOptions) *cobra.Command {
	o := &pushOptions{g: g}
	o.sign = options.NewSignOptions(&o.sigstore)
	cmd := &cobra.Command{
		Use:   "push",
		Short: "Tag the built image <registry>/<owner>/<name>:<version> and push it",
		Long: `push is the release's push stage on its own (the same code): it tags the image
the layout holds and pushes it, uploading only what the registry lacks, and
with --sign signs the digest.`,
		Example: `  GITHUB_TOKEN=… idopipe push --owner my-org            # ghcr.io/my-org/planner:0.4.0
  idopipe push --owner my-org --token-file ~/.github-token
  idopipe push --owner my-org --image-name actuator --mount-from my-org/planner   # mount shared layers
  COSIGN_PASSWORD=… idopipe push --owner my-org --sign --key cosign.key           # and sign the digest
  idopipe push --owner my-org --sign          # keyless, in a GitHub Actions job with id-token: write`,
		Args: usageArgs(cobra.NoArgs),
		RunE: runCommand(env, g, o),
	}
	fs := cmd.Flags()
	o.img.AddFlags(fs)
	o.registry.AddFlags(fs, options.RegistryFlags{Target: true, Jobs: true})
	o.push.AddFlags(fs)
	o.sign.AddFlags(fs)
	o.sigstore.AddFlags(fs, options.SigstoreFlags{Signing: true})
	fs.StringVar(&o.layout, "oci-layout", "", "OCI image layout directory written by `idopipe build` (default ~/.cache/idopipe/oci/IMAGE-NAME, where it writes)")
	fs.StringVar(&o.digest, "digest", "", "digest of the image in the layout (default: the last one built as NAME:VERSION)")
	o.progress.AddFlags(fs, options.PushProgressHelp)
	return cmd
}

// Complete reads the environment's defaults.
func (o *pushOptions) Complete(env Env) {
	o.registry.Complete(env.Getenv)
	o.sign.Complete(env.Getenv)
}

// Validate checks the groups.
func (o *pushOptions) Validate() error {
	return validateAll(o.img.Validate, o.registry.Validate, func() error { return o.push.Validate(o.registry.Registry) },
		o.sigstore.Validate, o.sign.Validate, o.progress.Validate)
}

// Run finds the image in the layout and pushes it through pipeline.Push.
func (o *pushOptions) Run(ctx context.Context, env Env) error {
	g := o.g
	cr, r, err := credentialed(env, g, &o.registry, o.registry.Registry)
	if err != nil {
		return finish(env, g, r, "", nil, err)
	}
	signer, err := o.sign.ImageSigner(ctx, o.registry.Access(&cr))
	if err != nil {
		return finish(env, g, r, "", nil, err)
	}
	bar, err := pushProgress(env, g, o.progress.Mode)
	if err != nil {
		return finish(env, g, r, "", nil, err)
	}
	if o.layout == "" {
		if o.layout, err = build.DefaultLayout(g.CacheDir, o.img.Name); err != nil {
			return finish(env, g, r, "", nil, err)
		}
	}
	if o.digest == "" {
		if o.digest, err = publish.Latest(o.layout, o.img.Name+":"+o.img.Version); err != nil {
			return finish(env, g, r, "", nil, err)
		}
	}
	po := pipeline.Options{
		Images: []build.Spec{{Name: o.img.Name, Version: o.img.Version, Layout: o.layout}},
		Target: target(&o.registry, &o.push),
		Creds:  cr,
	}
	deps := wiring{signer: signer, progress: bar, registry: &o.registry, creds: &cr}.deps()
	res, err := pipeline.Push(ctx, po, deps, []build.Result{{Layout: o.layout, Digest: o.digest}}, r)
	out := pushResult{Ref: res.Ref, Digest: o.digest}
	if res.Blobs != nil {
		out.Blobs = *res.Blobs
	}
	if len(res.Signed) > 0 {
		out.Signed = res.Signed[0]
	}
	return finish(env, g, r, "pushed "+res.Ref, out, err)
}

// pushResult is push's result object (-o json).
type pushResult struct {
	Ref    string        `json:"ref"`
	Digest string        `json:"digest"`
	Blobs  publish.Stats `json:"blobs"` // uploaded, mounted, already present
	// Signed is what --sign stored; absent when the image is not signed.
	Signed *sign.Result `json:"signed,omitempty"`
}
