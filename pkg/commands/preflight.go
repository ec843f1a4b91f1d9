package commands

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/pipeline"
	"github.com/idopipe/idopipe/pkg/publish"
)

// preflightOptions are preflight's flag groups (no --jobs: it uploads nothing).
type preflightOptions struct {
	g        *options.GlobalOptions
	img      options.ImageOptions
	registry options.RegistryOptions
}

func newPreflightCommand(env Env, g *options.GlobalOptions) *cobra.Command {
	o := &preflightOptions{g: g}
	cmd := &cobra.Command{
		Use:   "preflight",
		Short: "Check that the token may push to the target repository, in seconds",
		Long: `preflight exchanges the credentials for a push-scoped registry token and starts
(then cancels) a blob upload to <registry>/<owner>/<image-name>. A token that
can log in but lacks write:packages fails here, not after a long build.
release runs it alongside the build.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			o.registry.Complete(env.Getenv)
			if err := o.Validate(); err != nil {
				return finish(env, g, plainReporter(env, g), "", nil, err)
			}
			return o.Run(c.Context(), env)
		},
	}
	o.img.AddFlags(cmd.Flags())
	o.registry.AddFlags(cmd.Flags(), options.RegistryFlags{Target: true})
	return cmd
}

// Validate checks the groups.
func (o *preflightOptions) Validate() error {
	if err := o.img.Validate(); err != nil {
		return err
	}
	return o.registry.Validate()
}

// Run asks the registry.
func (o *preflightOptions) Run(ctx context.Context, env Env) error {
	g := o.g
	cr, r, err := credentialed(env, g, &o.registry, o.registry.Registry)
	if err != nil {
		return finish(env, g, r, "", nil, err)
	}
	var repo string
	err = pipeline.RunStage(ctx, "preflight", func(ctx context.Context) (string, error) {
		tag, err := pipeline.Tag(o.registry.Registry, o.registry.Owner, o.img.Name, o.img.Version)
		if err != nil {
			return "", err
		}
		repo = tag.Context().String()
		if err := publish.New(o.registry.Access(&cr)).Preflight(ctx, tag.Context()); err != nil {
			return "", err
		}
		return "the token from " + cr.Source + " may push to " + repo, nil
	}, r)
	return finish(env, g, r, "", map[string]string{"repository": repo, "tokenSource": cr.Source}, err)
}
