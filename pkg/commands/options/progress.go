package options

import (
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/fail"
)

// ProgressOptions are --progress: how long work shows on stderr.
type ProgressOptions struct {
	Mode string
}

// BuildProgressHelp is --progress's help where a build runs.
const BuildProgressHelp = "progress display: auto (tty on a terminal, else plain), tty, plain, rawjson or quiet; BuildKit's for the build, a bar (tty) or a line a second for the push"

// PushProgressHelp is --progress's help of the push command.
const PushProgressHelp = "push progress on stderr: auto (tty on a terminal, else plain), tty (a bar redrawn in place), plain (a line a second; rawjson counts as plain) or quiet"

// AddFlags adds --progress with help.
func (o *ProgressOptions) AddFlags(fs *pflag.FlagSet, help string) {
	fs.StringVar(&o.Mode, "progress", "auto", help)
}

// Validate refuses an unknown mode (whether tty has a terminal is known
// only where the output goes: build.DisplayMode).
func (o *ProgressOptions) Validate() error {
	if !slices.Contains(build.ProgressModes, o.Mode) {
		return fail.New(fail.Usage, "use --progress "+strings.Join(build.ProgressModes, ", "), "unknown progress mode %q", o.Mode)
	}
	return nil
}
