package commands

import (
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/build"

	"github.com/idopipe/idopipe/pkg/pipeline"
)

func newDeployCommand(env Env, g *globalOptions) *cobra.Command {
	var img imageOptions
	var reg registryOptions
	var image string
	cl := newClusterOptions()
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Deploy a pushed image: namespace, pull Secret, apply the manifest, wait for the Pods",
		Example: `  idopipe deploy --image ghcr.io/my-org/planner:0.4.0@sha256:… -n ido \
    --manifest deploy/manifest.yaml --crds artefacts/intents_crds_v1alpha1.yaml`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			r := g.reporter(env, nil)
			cr, err := reg.credentials(env, registryOf(image), warner(r))
			if err != nil {
				return finish(env, g, r, "", nil, err)
			}
			r = g.secretReporter(env, cr.Token)
			o := pipeline.Options{
				Build:       build.Spec{Name: img.Name},
				Creds:       cr,
				Image:       image,
				Manifests:   cl.Manifests,
				CRDs:        cl.CRDs,
				Namespace:   cl.namespace(),
				SecretName:  cl.SecretName,
				Pin:         cl.Pin,
				Force:       cl.Force,
				NoRecreate:  cl.NoRecreate,
				DryRun:      cl.DryRun,
				Timeout:     cl.Timeout,
				LockHolder:  lockHolder(env),
				LockTimeout: cl.LockWait,
				Cluster:     cl.Flags,
			}
			res, err := pipeline.Deploy(c.Context(), o, r)
			summary := releaseSummary(res, o.Namespace)
			if o.DryRun {
				summary = "dry run: nothing was built, pushed or changed"
			}
			return finish(env, g, r, summary, res, err)
		},
	}
	img.addFlags(cmd.Flags())
	hideFlags(cmd.Flags(), "version")
	reg.addFlags(cmd.Flags(), false)
	cl.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&image, "image", "", "the pushed image, REGISTRY/OWNER/NAME:VERSION[@sha256:…]")
	return cmd
}

// registryOf is the registry host of an image reference, "" when it does not parse.
func registryOf(image string) string {
	ref, err := name.ParseReference(image)
	if err != nil {
		return ""
	}
	return ref.Context().RegistryStr()
}
