package commands

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/pipeline"
)

func newReleaseCommand(env Env, g *globalOptions) *cobra.Command {
	var img imageOptions
	var b buildOptions
	var reg registryOptions
	var po pushOptions
	cl := newClusterOptions()
	cmd := &cobra.Command{
		Use:   "release",
		Short: "Run every stage: build, push, verify-pull, secret, apply, wait",
		Example: `  # the whole guide in one command (token from $GITHUB_TOKEN or .github-token)
  idopipe release --source ~/src/intent-driven-orchestration --owner my-org \
    --manifest deploy/manifest.yaml --crds artefacts/intents_crds_v1alpha1.yaml`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			r := g.reporter(env, nil)
			cr, err := reg.credentials(env, reg.Registry, warner(r))
			if err != nil {
				return finish(env, g, r, "", nil, err)
			}
			r = g.secretReporter(env, cr.Token)
			o := pipeline.Options{
				Build:        b.spec(img),
				BuildOptions: b.clientOptions(env, env.Stderr),
				Registry:     reg.Registry,
				Owner:        reg.owner(env),
				Creds:        cr,
				Access:       reg.access(nil),
				Tags:         po.Tags,
				Manifests:    cl.Manifests,
				CRDs:         cl.CRDs,
				Namespace:    cl.namespace(),
				SecretName:   cl.SecretName,
				Pin:          cl.Pin,
				Force:        cl.Force,
				NoRecreate:   cl.NoRecreate,
				DryRun:       cl.DryRun,
				Timeout:      cl.Timeout,
				LockHolder:   lockHolder(env),
				LockTimeout:  cl.LockWait,
				Cluster:      cl.Flags,
				Progress:     env.Stderr,
			}
			res, err := pipeline.Release(c.Context(), o, r)
			if gerr := writeGitHubResult(env, res, o.Namespace, err); gerr != nil && err == nil {
				err = gerr
			}
			summary := releaseSummary(res, o.Namespace)
			if o.DryRun {
				summary = "dry run: nothing was built, pushed or changed"
			}
			return finish(env, g, r, summary, res, err)
		},
	}
	img.addFlags(cmd.Flags())
	b.addFlags(cmd.Flags(), false)
	reg.addFlags(cmd.Flags(), true)
	po.addFlags(cmd.Flags())
	cl.addFlags(cmd.Flags())
	return cmd
}

func releaseSummary(res pipeline.Result, ns string) string {
	ready := 0
	var names []string
	for _, p := range res.Pods {
		if p.Ready {
			ready++
		}
		names = append(names, p.Name)
	}
	total := 0.0
	for _, s := range res.Stages {
		total += s
	}
	return fmt.Sprintf("released %s to namespace %s: %d/%d Pods Ready (%s) in %.1fs",
		res.Ref, ns, ready, len(res.Pods), strings.Join(names, ", "), total)
}
