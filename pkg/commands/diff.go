package commands

import (
	"github.com/spf13/cobra"
)

// newDiffCommand is `deploy --dry-run` under kubectl's name for it.
func newDiffCommand(env Env, g *globalOptions) *cobra.Command {
	cmd := newDeployCommand(env, g)
	cmd.Use = "diff"
	cmd.Short = "Show what deploy would change, per object (Secret data masked); change nothing"
	cmd.Example = `  idopipe diff --image ghcr.io/my-org/planner:0.4.0@sha256:… --manifest deploy/manifest.yaml`
	_ = cmd.Flags().Set("dry-run", "true")
	_ = cmd.Flags().MarkHidden("dry-run")
	return cmd
}
