package commands

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/pipeline"
	"github.com/idopipe/idopipe/pkg/publish"
)

func newPreflightCommand(env Env, g *globalOptions) *cobra.Command {
	var img imageOptions
	var reg registryOptions
	cmd := &cobra.Command{
		Use:   "preflight",
		Short: "Check that the token may push to the target repository, in seconds",
		Long: `preflight exchanges the credentials for a push-scoped registry token and starts
(then cancels) a blob upload to <registry>/<owner>/<image-name>. A token that
can log in but lacks write:packages fails here, not after a long build.
release runs it before building.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			cr, r, err := g.credentialed(env, reg, reg.Registry)
			if err != nil {
				return finish(env, g, r, "", nil, err)
			}
			var repo string
			err = pipeline.RunStage(c.Context(), "preflight", func(ctx context.Context) (string, error) {
				tag, err := pipeline.Tag(reg.Registry, reg.owner(env), img.Name, img.Version)
				if err != nil {
					return "", err
				}
				repo = tag.Context().String()
				if err := publish.Preflight(ctx, tag.Context(), reg.access(&cr)); err != nil {
					return "", err
				}
				return "the token from " + cr.Source + " may push to " + repo, nil
			}, r)
			return finish(env, g, r, "", map[string]string{"repository": repo, "tokenSource": cr.Source}, err)
		},
	}
	img.addFlags(cmd.Flags())
	reg.addFlags(cmd.Flags(), true)
	return cmd
}
