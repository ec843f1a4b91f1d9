package options

import (
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/pipeline"
)

// StagesOptions are --from, --to and --skip of release.
type StagesOptions struct {
	pipeline.Selection
}

// AddFlags adds the stage selection, its help naming pipeline.StageNames.
func (o *StagesOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.From, "from", "", "first stage to run: "+strings.Join(pipeline.StageNames, ", ")+" (validate always runs)")
	fs.StringVar(&o.To, "to", "", "last stage to run")
	fs.StringSliceVar(&o.Skip, "skip", nil, "stages to leave out, e.g. --skip wait")
}

// Validate refuses a name that is not a stage; whether the selected
// stages can run together is the pipeline's to say.
func (o *StagesOptions) Validate() error {
	check := func(flag string, names ...string) error {
		for _, n := range names {
			if n != "" && !slices.Contains(pipeline.StageNames, n) {
				return fail.New(fail.Usage, "use one of "+strings.Join(pipeline.StageNames, ", "), "%s: unknown stage %q", flag, n)
			}
		}
		return nil
	}
	if err := check("--from", o.From); err != nil {
		return err
	}
	if err := check("--to", o.To); err != nil {
		return err
	}
	return check("--skip", o.Skip...)
}
