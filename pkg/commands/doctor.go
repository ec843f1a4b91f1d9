package commands

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/doctor"
	"github.com/idopipe/idopipe/pkg/pipeline"
	"github.com/idopipe/idopipe/pkg/report"
)

func newDoctorCommand(env Env, g *options.GlobalOptions) *cobra.Command {
	var o doctor.Options
	var secret options.PullSecretOptions
	var reg options.RegistryOptions
	kopts := options.NewKubeOptions()
	kube := kopts.Flags
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Run the ErrImagePull checklist on a deployed namespace",
		Long: `doctor checks, with a ✓ or ✗ line each and the fix for every ✗: the namespace
exists; the pull Secret exists, has type kubernetes.io/dockerconfigjson and an
entry for the image's registry; the ServiceAccount of each Pod running the
image references it; the image is pullable with the Secret's credentials; and
each Pod's status, classified waiting reasons, events and last log lines.`,
		Example: `  idopipe doctor -n ido`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			r := plainReporter(env, g)
			for _, validate := range []func() error{func() error { return options.ValidateCA(reg.CAFile) }, secret.Validate, kopts.Validate} {
				if err := validate(); err != nil {
					return finish(env, g, r, "", nil, err)
				}
			}
			o.SecretName, o.CAFile = secret.SecretName, reg.CAFile
			var checks []doctor.Check
			err := pipeline.RunStage(c.Context(), "doctor", func(ctx context.Context) (string, error) {
				kc, err := cluster.New(ctx, kube)
				if err != nil {
					return "", err
				}
				o.Namespace = *kube.Namespace
				checks, err = doctor.Run(ctx, kc, o)
				for _, ch := range checks {
					r.Report(report.Event{Kind: report.Info, Stage: "doctor", Message: ch.String()})
				}
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("%d checks passed", len(checks)), nil
			}, r)
			return finish(env, g, r, "", checks, err)
		},
	}
	fs := cmd.Flags()
	secret.AddFlags(fs)
	fs.StringVar(&o.Image, "image", "", "the image the Pods should pull (default: the first non-Docker-Hub image the Pods run)")
	reg.AddCAFlag(fs)
	kopts.AddFlags(fs)
	return cmd
}
