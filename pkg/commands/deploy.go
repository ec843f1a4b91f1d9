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
	var vk verifyKeyOptions
	cl := newClusterOptions()
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Deploy a pushed image: namespace, pull Secret, apply the manifest, wait for the Pods",
		Example: `  idopipe deploy --image ghcr.io/my-org/planner:0.4.0@sha256:… -n ido \
    --manifest deploy/manifest.yaml --crds artefacts/intents_crds_v1alpha1.yaml
  idopipe deploy --image ghcr.io/my-org/planner:0.4.0 --verify-key cosign.pub   # only if its digest is signed`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			cr, r, err := g.credentialed(env, reg, registryOf(image))
			if err != nil {
				return finish(env, g, r, "", nil, err)
			}
			keys, err := vk.keys()
			if err != nil {
				return finish(env, g, r, "", nil, err)
			}
			o := pipeline.Options{Build: build.Spec{Name: img.Name}, Creds: cr, Image: image, Access: reg.access(nil), VerifyKeys: keys}
			cl.fill(&o, env)
			res, err := pipeline.Deploy(c.Context(), o, r)
			return finish(env, g, r, releaseSummary(res, o), res, err)
		},
	}
	img.addFlags(cmd.Flags())
	hideFlags(cmd.Flags(), "version")
	reg.addFlags(cmd.Flags(), false)
	cl.addFlags(cmd.Flags())
	vk.addFlags(cmd.Flags())
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
