package commands

import (
	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/report"
	"github.com/idopipe/idopipe/pkg/version"
)

func newVersionCommand(env Env, g *options.GlobalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print idopipe's version and commit",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			v := version.Get()
			return finish(env, g, report.Discard, v.String(), v, nil)
		},
	}
}
