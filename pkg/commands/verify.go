package commands

import (
	"context"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/pipeline"
	"github.com/idopipe/idopipe/pkg/verify"
)

func newVerifyCommand(env Env, g *globalOptions) *cobra.Command {
	var reg registryOptions
	var digest string
	cmd := &cobra.Command{
		Use:   "verify-pull REF",
		Short: "Check that an image can be pulled (and has the expected digest)",
		Long: `verify-pull resolves REF in its registry with the same credentials a release
uses, reads its manifest(s) and config(s), and exits 0 only when the image is
pullable and, with --digest, resolves to that digest. REF may carry @sha256:….`,
		Example: `  idopipe verify-pull ghcr.io/my-org/planner:0.4.0 --digest sha256:…`,
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, args []string) error {
			r := g.reporter(env, nil)
			cr, err := optionalCredentials(env, reg, r)
			if err != nil {
				return finish(env, g, r, "", nil, err)
			}
			if cr != nil {
				r = g.reporter(env, cr.Token.Redact)
			}
			var rep verify.Report
			err = pipeline.Run(c.Context(), []pipeline.Stage{{Name: "verify-pull", Run: func(ctx context.Context) (string, error) {
				ref, err := name.ParseReference(args[0], name.StrictValidation)
				if err != nil {
					return "", fail.New(fail.Usage, "give REGISTRY/REPOSITORY:TAG or …@sha256:…, in lowercase", "invalid image reference %q: %v", args[0], err)
				}
				want := digest
				if d, ok := ref.(name.Digest); ok {
					if want != "" && want != d.DigestStr() {
						return "", fail.New(fail.Usage, "give the digest once", "--digest %s differs from the digest in %s", want, args[0])
					}
					want = d.DigestStr()
				}
				rep, err = verify.Pull(ctx, ref, want, reg.access(cr))
				if err != nil {
					return "", err
				}
				return rep.String(), nil
			}}}, r, nil)
			return finish(env, g, r, "", rep, err)
		},
	}
	reg.addFlags(cmd.Flags(), false)
	cmd.Flags().StringVar(&digest, "digest", "", "expected digest (sha256:…)")
	return cmd
}
