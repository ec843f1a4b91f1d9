package commands

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/pipeline"
)

// rollbackOptions are rollback's flag groups: the registry (its token for
// the pull Secret and the check that the images are still there), the
// signature policy, kubectl's flags, how the cluster is written, and the
// history.
type rollbackOptions struct {
	g        *options.GlobalOptions
	registry options.RegistryOptions
	policy   options.PolicyOptions
	sigstore options.SigstoreOptions
	kube     *options.KubeOptions
	cluster  options.ClusterOptions
	history  options.HistoryOptions
	revision int // 0: the revision deployed before the current one
}

func newRollbackCommand(env Env, g *options.GlobalOptions) *cobra.Command {
	o := &rollbackOptions{g: g, kube: options.NewKubeOptions()}
	o.policy = options.NewPolicyOptions(&o.sigstore)
	cmd := &cobra.Command{
		Use:   "rollback [REVISION]",
		Short: "Redeploy an earlier revision of a namespace: its objects and its images by digest",
		Long: `rollback redeploys a revision of the namespace's history (idopipe history):
by default the newest one before the current that was deployed. Its objects
and its images by digest come from the revision's record: no source, build or
manifest file is needed. It runs deploy's stages: the images must still be in
the registry (checked before anything is written; a missing digest is named),
the signature policy (--verify-key) as for a deploy, the plan, the apply (Pods
whose spec changes are recreated, objects the revision did not have are
pruned) and the wait. It records a revision of its own, "rollback to N".`,
		Example: `  idopipe rollback -n ido              # back to the revision deployed before the current
  idopipe rollback 3 -n ido --verify-key cosign.pub`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: withRevision(env, g, o, &o.revision),
	}
	fs := cmd.Flags()
	o.registry.AddFlags(fs, options.RegistryFlags{Jobs: true})
	fs.StringVar(&o.registry.Registry, "registry", "ghcr.io", "the registry of the revision's images: the token for it goes into the pull Secret and checks that they are still there")
	o.kube.AddFlags(fs)
	o.cluster.AddWriteFlags(fs)
	o.policy.AddFlags(fs)
	o.sigstore.AddFlags(fs, options.SigstoreFlags{})
	o.history.AddFlags(fs, options.HistoryFlags{})
	return cmd
}

// Complete reads the environment's defaults.
func (o *rollbackOptions) Complete(env Env) {
	o.registry.Complete(env.Getenv)
	o.cluster.Complete(env.Getenv)
	o.history.Complete(env.Getenv)
}

// Validate checks every group.
func (o *rollbackOptions) Validate() error {
	return validateAll(o.registry.Validate, o.sigstore.Validate, o.policy.Validate, o.kube.Validate, o.cluster.ValidateWrites, o.history.Validate)
}

// Run resolves the token for --registry and runs pipeline.Rollback.
func (o *rollbackOptions) Run(ctx context.Context, env Env) error {
	g := o.g
	cr, r, err := credentialed(env, g, &o.registry, o.registry.Registry)
	if err != nil {
		return finish(env, g, r, "", nil, err)
	}
	po := pipeline.Options{
		Images:   []build.Spec{{}},
		Target:   pipeline.Target{Registry: o.registry.Registry},
		Deploy:   deployConfig(o.kube, &o.cluster),
		Creds:    cr,
		Policy:   o.policy.Policy,
		History:  history(ctx, &o.history, ""),
		Rollback: pipeline.RollbackConfig{Revision: o.revision},
	}
	deps := wiring{kube: o.kube, registry: &o.registry, creds: &cr}.deps()
	res, err := pipeline.Rollback(ctx, po, deps, r)
	return finish(env, g, r, rollbackSummary(res, po), res, err)
}

// rollbackSummary is the one line a rollback ends with.
func rollbackSummary(res pipeline.Result, o pipeline.Options) string {
	ready := 0
	var names []string
	for _, p := range res.Pods {
		if p.Ready {
			ready++
		}
		names = append(names, p.Name)
	}
	rev := ""
	if r := res.Revision; r != nil {
		rev = fmt.Sprintf(" as revision %d (%s)", r.Number, r.Description)
	}
	return fmt.Sprintf("rolled back namespace %s%s: %s runs, %d/%d Pods Ready (%s)",
		o.Deploy.Namespace, rev, res.Ref, ready, len(res.Pods), strings.Join(names, ", "))
}

// withRevision is the RunE of a command taking an optional REVISION
// argument (history, rollback): it reads it into *rev, then runs o.
func withRevision(env Env, g *options.GlobalOptions, o runner, rev *int) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		if len(args) == 1 {
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 {
				return finish(env, g, plainReporter(env, g), "", nil, fail.New(fail.Usage, "pass a revision number from `idopipe history`", "revision %q is not a number", args[0]))
			}
			*rev = n
		}
		return runCommand(env, g, o)(c, args)
	}
}
