package commands

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/pipeline"
)

// buildOptions are build's flag groups; the registry group only names the
// registry whose base and cache images are pulled with the push token.
type buildOptions struct {
	g        *options.GlobalOptions
	img      options.ImageOptions
	build    options.BuildOptions
	buildkit options.BuildKitOptions
	progress options.ProgressOptions
	registry options.RegistryOptions
}

func newBuildCommand(env Env, g *options.GlobalOptions) *cobra.Command {
	o := &buildOptions{g: g}
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build the image with BuildKit into an OCI image layout",
		Example: `  # what "make controller-images" does, through BuildKit
  idopipe build --source . --file Dockerfile --image-name planner --version 0.4.0

  # both architectures in one image index, reproducibly (SOURCE_DATE_EPOCH
  # from the last commit), with the registry as a shared build cache
  idopipe build --platform linux/amd64,linux/arm64 \
    --cache-from type=registry,ref=ghcr.io/my-org/planner:buildcache \
    --cache-to type=registry,ref=ghcr.io/my-org/planner:buildcache,mode=max`,
		Args: usageArgs(cobra.NoArgs),
		RunE: runCommand(env, g, o),
	}
	fs := cmd.Flags()
	o.img.AddFlags(fs)
	o.build.AddFlags(fs, options.BuildFlags{Layout: true})
	o.buildkit.AddFlags(fs)
	o.progress.AddFlags(fs, options.BuildProgressHelp)
	// The push credentials, for a private base or cache image on the
	// registry idopipe pushes to.
	o.registry.AddCredentialFlags(fs, "registry idopipe pushes to: base and cache images there are pulled with the push token")
	// The owner names a kube:// builder's default cache, REGISTRY/OWNER/IMAGE-NAME:buildcache.
	o.registry.AddOwnerFlag(fs)
	return cmd
}

// Complete reads the environment's defaults.
func (o *buildOptions) Complete(env Env) {
	o.build.Complete(env.Getenv)
	o.buildkit.Complete(env.Getenv)
	o.registry.Complete(env.Getenv)
}

// Validate checks the groups.
func (o *buildOptions) Validate() error {
	return validateAll(o.img.Validate, func() error { return o.build.Validate(o.img) }, o.buildkit.Validate, o.progress.Validate, o.registry.Validate)
}

// Run builds the one image into its layout.
func (o *buildOptions) Run(ctx context.Context, env Env) error {
	g := o.g
	r := plainReporter(env, g)
	var res build.Result
	err := pipeline.RunStage(ctx, "build", func(ctx context.Context) (string, error) {
		specs, err := o.build.Specs(o.img, g.CacheDir)
		if err != nil {
			return "", err
		}
		note := o.build.DefaultCache(specs, o.buildkit.InCluster(), o.registry.Registry, o.registry.Owner)
		bc := newBuildCredentials(o.registry.Registry, specs, func() (creds.Credentials, error) {
			return o.registry.Credentials(o.registry.Registry, warner(r))
		})
		results, err := builder(env, g, &o.buildkit, &o.build, o.progress.Mode, bc, nil, note).Build(ctx, specs)
		if len(results) > 0 {
			res = results[0]
		}
		return res.Digest, err
	}, r)
	return finish(env, g, r, buildSummary(res), res, err)
}

// buildSummary is the human closing line: the image, its platforms (not
// counting attestations), provenance and the cache's share.
func buildSummary(res build.Result) string {
	line := "built " + res.Ref + "@" + res.Digest + " into " + res.Layout
	var notes []string
	if len(res.Images) > 1 {
		notes = append(notes, "platforms "+strings.Join(res.Platforms(), ", "))
	} else if len(res.Images) == 1 {
		notes = append(notes, res.Images[0].Platform)
	}
	if n := len(res.Attestations); n > 0 {
		notes = append(notes, fmt.Sprintf("%d provenance attestation(s)", n))
	}
	if res.SourceDateEpoch != "" {
		notes = append(notes, "SOURCE_DATE_EPOCH "+res.SourceDateEpoch)
	}
	if res.Steps > 0 {
		notes = append(notes, fmt.Sprintf("%d/%d steps cached", res.Cached, res.Steps))
	}
	if len(notes) == 0 {
		return line
	}
	return line + " (" + strings.Join(notes, "; ") + ")"
}
