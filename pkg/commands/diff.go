package commands

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/pipeline"
)

// newDiffCommand is deploy's dry run under kubectl's name for it, with an
// exit status for CI: 0 nothing to change, 1 differences, above 1 an error.
func newDiffCommand(env Env, g *options.GlobalOptions) *cobra.Command {
	o := &deployOptions{g: g, kube: options.NewKubeOptions(), diff: true}
	cmd := &cobra.Command{
		Use:   "diff",
		Short: "Show what deploy would change, per object (Secret data masked); change nothing",
		Long: `diff validates the manifests and plans the deploy of --image by a server-side
dry run: each object's change (create, update, unchanged, recreate, prune) and
the pull Secret's (its data masked). Nothing is written.

Exit status, for a drift check in CI:
  0  nothing would change
  1  differences: something would be created, updated, recreated or pruned,
     the pull Secret included
  >1 an error, with the code of its class (see ` + "`idopipe exit-codes`" + `;
     no class has code 1)`,
		Example: `  idopipe diff --image ghcr.io/my-org/planner:0.4.0@sha256:… --manifest deploy/manifest.yaml
  idopipe diff --image … -q || echo "the cluster differs from the manifest"`,
		Args: usageArgs(cobra.NoArgs),
		RunE: runCommand(env, g, o),
	}
	// No --dry-run (diff always is one), and none of the flags only a
	// writing run uses: --no-recreate, --timeout, --lock-timeout.
	o.addFlags(cmd, options.ClusterFlags{})
	return cmd
}

// diffSummary is diff's closing line.
func diffSummary(res pipeline.Result) string {
	if res.Changes == 0 {
		return "dry run: nothing was built, pushed or changed; no differences"
	}
	return fmt.Sprintf("dry run: nothing was built, pushed or changed; %d difference(s)", res.Changes)
}
