package commands

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/pipeline"
	"github.com/idopipe/idopipe/pkg/publish"
	"github.com/idopipe/idopipe/pkg/registry"
	"github.com/idopipe/idopipe/pkg/report"
	"github.com/idopipe/idopipe/pkg/sign"
)

func newPushCommand(env Env, g *globalOptions) *cobra.Command {
	var img imageOptions
	var reg registryOptions
	var po pushOptions
	var so signOptions
	var layout, digest, progress string
	cmd := &cobra.Command{
		Use:   "push",
		Short: "Tag the built image <registry>/<owner>/<name>:<version> and push it",
		Example: `  GITHUB_TOKEN=… idopipe push --owner my-org            # ghcr.io/my-org/planner:0.4.0
  idopipe push --owner my-org --token-file ~/.github-token
  idopipe push --owner my-org --image-name actuator --mount-from my-org/planner   # mount shared layers
  COSIGN_PASSWORD=… idopipe push --owner my-org --sign --key cosign.key           # and sign the digest`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			cr, r, err := g.credentialed(env, reg, reg.Registry)
			if err != nil {
				return finish(env, g, r, "", nil, err)
			}
			signer, err := so.signer(env)
			if err != nil {
				return finish(env, g, r, "", nil, err)
			}
			var ref string
			var stats publish.Stats
			var signed *sign.Result
			err = pipeline.RunStage(c.Context(), "push", func(ctx context.Context) (string, error) {
				tag, err := pipeline.Tag(reg.Registry, reg.owner(env), img.Name, img.Version)
				if err != nil {
					return "", err
				}
				mounts, err := po.mountFrom(tag.RegistryStr())
				if err != nil {
					return "", err
				}
				w, bar, err := g.pushProgress(env, progress)
				if err != nil {
					return "", err
				}
				if layout == "" {
					if layout, err = build.DefaultLayout(env.Getenv, img.Name); err != nil {
						return "", err
					}
				}
				if digest == "" {
					if digest, err = publish.Latest(layout, img.Name+":"+img.Version); err != nil {
						return "", err
					}
				}
				d, err := publish.Push(ctx, layout, digest, tag, reg.access(&cr), publish.WithProgressBar(w, bar), publish.WithTags(po.Tags...),
					publish.WithMountFrom(mounts...), publish.WithStats(&stats))
				if err != nil {
					return "", err
				}
				ref = registry.Describe(tag, d.DigestStr())
				summary := ref + " [" + stats.String() + "]"
				if signer != nil {
					res, err := sign.Image(ctx, d, signer, reg.access(&cr))
					if err != nil {
						return "", err
					}
					signed = &res
					summary += "; " + res.String()
				}
				return summary, nil
			}, r)
			return finish(env, g, r, "pushed "+ref, pushResult{Ref: ref, Digest: digest, Blobs: stats, Signed: signed}, err)
		},
	}
	img.addFlags(cmd.Flags())
	reg.addFlags(cmd.Flags(), true)
	po.addFlags(cmd.Flags())
	so.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&layout, "oci-layout", "", "OCI image layout directory written by `idopipe build` (default ~/.cache/idopipe/oci/IMAGE-NAME, where it writes)")
	cmd.Flags().StringVar(&digest, "digest", "", "digest of the image in the layout (default: the last one built as NAME:VERSION)")
	cmd.Flags().StringVar(&progress, "progress", "auto", "push progress on stderr: auto (tty on a terminal, else plain), tty (a bar redrawn in place), plain (a line a second; rawjson counts as plain) or quiet")
	return cmd
}

// pushResult is push's result object (-o json).
type pushResult struct {
	Ref    string        `json:"ref"`
	Digest string        `json:"digest"`
	Blobs  publish.Stats `json:"blobs"` // uploaded, mounted, already present
	// Signed is what --sign stored; absent when the image is not signed.
	Signed *sign.Result `json:"signed,omitempty"`
}

// warner reports warnings (such as a token file readable by others).
func warner(r report.Reporter) func(string) {
	return func(msg string) { r.Report(report.Event{Kind: report.Warning, Message: msg}) }
}

// optionalCredentials resolves credentials, or none when no token is
// configured at all (anonymous pulls of public images).
func optionalCredentials(env Env, reg registryOptions, registryHost string, r report.Reporter) (*creds.Credentials, error) {
	if reg.TokenFile == "" && reg.Username == "" {
		c, err := reg.credentials(env, registryHost, warner(r))
		if err != nil {
			return nil, nil //nolint:nilerr // no usable credentials: pull anonymously
		}
		return &c, nil
	}
	c, err := reg.credentials(env, registryHost, warner(r))
	if err != nil {
		return nil, err
	}
	return &c, nil
}
