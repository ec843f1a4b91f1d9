package commands

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/pipeline"
)

func newBuildCommand(env Env, g *globalOptions) *cobra.Command {
	var img imageOptions
	var b buildOptions
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build the image with BuildKit into an OCI image layout",
		Example: `  # what "make controller-images" does, through BuildKit
  idopipe build --source . --file Dockerfile --image-name planner --version 0.4.0`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if b.Layout == "" {
				b.Layout = defaultLayout
			}
			r := g.reporter(env, nil)
			var res build.Result
			err := pipeline.Run(c.Context(), []pipeline.Stage{{Name: "build", Run: func(ctx context.Context) (string, error) {
				var err error
				res, err = build.Build(ctx, b.spec(img), b.clientOptions(env, env.Stderr)...)
				return res.Digest, err
			}}}, r, nil)
			return finish(env, g, r, "built "+res.Ref+"@"+res.Digest+" into "+res.Layout, res, err)
		},
	}
	img.addFlags(cmd.Flags())
	b.addFlags(cmd.Flags(), true)
	return cmd
}
