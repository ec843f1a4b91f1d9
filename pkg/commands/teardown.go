package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/pipeline"
	"github.com/idopipe/idopipe/pkg/report"
)

func newTeardownCommand(env Env, g *options.GlobalOptions) *cobra.Command {
	var o cluster.TeardownOptions
	kopts := options.NewKubeOptions()
	kube := kopts.Flags
	cmd := &cobra.Command{
		Use:   "teardown",
		Short: "Delete what idopipe deployed in a namespace (its inventory), nothing else",
		Long: `teardown deletes the namespaced objects the namespace's idopipe inventory lists
(the guide's clean-up, and the delete half of its redeploy recipe).
Cluster-scoped objects (ClusterRole, ClusterRoleBinding) only with
--cluster-scoped; the namespace itself only with --delete-namespace. Objects idopipe
did not apply are left alone. It waits (up to --timeout) until what it deleted
is gone: the Pods stopped and, with --delete-namespace, the namespace finalized,
so that a release right after it starts from a clean namespace.`,
		Example: `  idopipe teardown -n ido --cluster-scoped`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			r := plainReporter(env, g)
			if err := kopts.Validate(); err != nil {
				return finish(env, g, r, "", nil, err)
			}
			if o.Wait < 0 {
				return finish(env, g, r, "", nil, fail.New(fail.Usage, "pass --delete-timeout 0 or more, e.g. 2m", "--delete-timeout %s is negative", o.Wait))
			}
			var done []cluster.Applied
			err := pipeline.RunStage(c.Context(), "teardown", func(ctx context.Context) (string, error) {
				kc, err := cluster.New(ctx, kube)
				if err != nil {
					return "", err
				}
				done, err = kc.Teardown(ctx, *kube.Namespace, o, func(msg string) {
					r.Report(report.Event{Kind: report.Info, Stage: "teardown", Message: msg})
				})
				for _, d := range done {
					r.Report(report.Event{Kind: report.Info, Stage: "teardown", Message: d.Ref + " deleted"})
				}
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("%d objects deleted", len(done)), nil
			}, r)
			return finish(env, g, r, "", done, err)
		},
	}
	cmd.Flags().BoolVar(&o.ClusterScoped, "cluster-scoped", false, "also delete the cluster-scoped objects idopipe applied")
	cmd.Flags().BoolVar(&o.Namespace, "delete-namespace", false, "also delete the namespace")
	// Not --timeout: that is the wait for Pods to become Ready in release
	// and deploy, and a config file's timeout: key must mean one thing.
	cmd.Flags().DurationVar(&o.Wait, "delete-timeout", 2*time.Minute, "how long to wait until what was deleted is gone (0: do not wait)")
	kopts.AddFlags(cmd.Flags())
	return cmd
}
