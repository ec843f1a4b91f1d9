package commands

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/pipeline"
)

func newReleaseCommand(env Env, g *globalOptions) *cobra.Command {
	var img imageOptions
	var b buildOptions
	var reg registryOptions
	var po pushOptions
	var so signOptions
	var vk verifyKeyOptions
	var extras []string
	var sel pipeline.Selection
	cl := newClusterOptions()
	cmd := &cobra.Command{
		Use:   "release",
		Short: "Run every stage: build, push, verify-pull, secret, apply, wait",
		Example: `  # the whole guide in one command (token from $GITHUB_TOKEN or .github-token)
  idopipe release --source ~/src/intent-driven-orchestration --owner my-org \
    --manifest deploy/manifest.yaml --crds artefacts/intents_crds_v1alpha1.yaml
  # sign what is pushed, and deploy it only if the signature checks out
  COSIGN_PASSWORD=… idopipe release --owner my-org --provenance min --sign --key cosign.key --verify-key cosign.pub`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			cr, r, err := g.credentialed(env, reg, reg.Registry)
			if err != nil {
				return finish(env, g, r, "", nil, err)
			}
			if b.Layout == "" {
				// Kept from run to run, so that an unchanged rebuild finds
				// its export there (see pkg/build/export.go).
				if b.Layout, err = build.DefaultLayout(env.Getenv, img.Name); err != nil {
					return finish(env, g, r, "", nil, err)
				}
			}
			main := b.spec(img)
			extra, err := parseExtraImages(extras, main)
			if err != nil {
				return finish(env, g, r, "", nil, err)
			}
			mounts, err := po.mountFrom(reg.Registry)
			if err != nil {
				return finish(env, g, r, "", nil, err)
			}
			progress, bar, err := g.pushProgress(env, b.Progress)
			if err != nil {
				return finish(env, g, r, "", nil, err)
			}
			signer, err := so.signer(env)
			if err != nil {
				return finish(env, g, r, "", nil, err)
			}
			keys, err := vk.keys()
			if err != nil {
				return finish(env, g, r, "", nil, err)
			}
			o := pipeline.Options{
				Extra:        extra,
				Stages:       sel,
				Build:        main,
				BuildOptions: b.clientOptions(env, progressOr(g, env), newBuildCredentials(reg.Registry, main, func() (creds.Credentials, error) { return cr, nil })),
				Registry:     reg.Registry,
				Owner:        reg.owner(env),
				Creds:        cr,
				Access:       reg.access(nil),
				Tags:         po.Tags,
				MountFrom:    mounts,
				Progress:     progress,
				Bar:          bar,
				Signer:       signer,
				VerifyKeys:   keys,
			}
			cl.fill(&o, env)
			res, err := pipeline.Release(c.Context(), o, r)
			if gerr := writeGitHubResult(env, res, o.Namespace, err); gerr != nil && err == nil {
				err = gerr
			}
			return finish(env, g, r, releaseSummary(res, o), res, err)
		},
	}
	img.addFlags(cmd.Flags())
	b.addFlags(cmd.Flags(), false)
	reg.addFlags(cmd.Flags(), true)
	po.addFlags(cmd.Flags())
	cl.addFlags(cmd.Flags())
	so.addFlags(cmd.Flags())
	vk.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&sel.From, "from", "", "first stage to run: "+strings.Join(pipeline.StageNames, ", ")+" (validate always runs)")
	cmd.Flags().StringVar(&sel.To, "to", "", "last stage to run")
	cmd.Flags().StringSliceVar(&sel.Skip, "skip", nil, "stages to leave out, e.g. --skip wait")
	cmd.Flags().StringArrayVar(&extras, "extra-image", nil,
		"another image to build, push and deploy in the same run: name=NAME,source=DIR[,file=DOCKERFILE][,version=V] (repeatable)")
	return cmd
}

// parseExtraImages reads --extra-image values; each image takes the main
// build's options (platforms, build args, labels, ...) but its own name,
// context, Dockerfile and version, and no cache export of its own.
func parseExtraImages(values []string, main build.Spec) ([]build.Spec, error) {
	var out []build.Spec
	for _, v := range values {
		s := main
		s.Dockerfile, s.CacheTo, s.CacheFrom = "", nil, nil
		for _, kv := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(kv, "=")
			switch {
			case !ok:
				return nil, fail.New(fail.Usage, "write --extra-image name=NAME,source=DIR[,file=PATH][,version=V]", "--extra-image %q: %q is not key=value", v, kv)
			case k == "name":
				s.Name = val
			case k == "source":
				s.Context = val
			case k == "file":
				s.Dockerfile = val
			case k == "version":
				s.Version = val
			default:
				return nil, fail.New(fail.Usage, "use the keys name, source, file and version", "--extra-image %q: unknown key %q", v, k)
			}
		}
		if s.Name == "" || s.Name == main.Name || s.Context == main.Context && s.Dockerfile == "" {
			return nil, fail.New(fail.Usage, "give each extra image its own name and source (or file)", "--extra-image %q needs a name of its own and a source or file", v)
		}
		if s.Dockerfile == "" {
			s.Dockerfile = filepath.Join(s.Context, "Dockerfile")
		}
		out = append(out, s)
	}
	return out, nil
}

// releaseSummary is the one line a release or deploy ends with.
func releaseSummary(res pipeline.Result, o pipeline.Options) string {
	if o.DryRun {
		return "dry run: nothing was built, pushed or changed"
	}
	ns := o.Namespace
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
	if len(res.Pods) == 0 && len(res.Objects) == 0 {
		return fmt.Sprintf("released %s in %.1fs; no cluster stage ran", res.Ref, total)
	}
	return fmt.Sprintf("released %s to namespace %s: %d/%d Pods Ready (%s) in %.1fs",
		res.Ref, ns, ready, len(res.Pods), strings.Join(names, ", "), total)
}
