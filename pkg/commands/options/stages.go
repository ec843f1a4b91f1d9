package options

import (
	"strings"

	"github.com/spf13/pflag"

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

// Validate refuses an unknown stage name or a selection that cannot run,
// with the pipeline's own check, before anything runs.
func (o *StagesOptions) Validate() error { return o.Selection.Validate() }
