package options

import (
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/idopipe/idopipe/pkg/fail"
)

// DefaultConfig is read when present and --config is not given.
const DefaultConfig = "idopipe.yaml"

// GlobalOptions apply to every command: the output format and verbosity,
// the config file, and what the surroundings say about output (the user's
// cache directory, GitHub Actions).
type GlobalOptions struct {
	Output string // human or json (yaml where the command allows it)
	// YAML: the command prints objects with -o yaml (set from the command
	// before Validate).
	YAML    bool
	Quiet   bool   // only the result and errors
	Verbose bool   // also the registry client's warnings and requests
	Config  string // --config; "" reads ./idopipe.yaml when present

	// From the environment (Complete).
	CacheDir string  // $XDG_CACHE_HOME, else $HOME/.cache; "" when neither is set
	Actions  Actions // GitHub Actions, when GITHUB_ACTIONS=true
}

// Actions is what a GitHub Actions job gives a step.
type Actions struct {
	Enabled bool   // GITHUB_ACTIONS=true
	Output  string // $GITHUB_OUTPUT: the step outputs file
	Summary string // $GITHUB_STEP_SUMMARY: the job summary file
	RunID   string // $GITHUB_RUN_ID
}

// AddFlags adds the global flags (persistent on the root command).
func (g *GlobalOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVarP(&g.Quiet, "quiet", "q", false, "print only the result (or the error); no stage lines, no progress")
	fs.BoolVarP(&g.Verbose, "verbose", "v", false, "also log the registry client's warnings and requests to stderr")
	fs.StringVar(&g.Config, "config", "", "config file (default ./"+DefaultConfig+" when present); flags override $IDOPIPE_* which override it")
	fs.StringVarP(&g.Output, "output", "o", "human", "output format: human or json (one JSON event per line, then a result object)")
}

// Complete reads the cache directory and GitHub Actions' variables.
func (g *GlobalOptions) Complete(getenv Getenv) {
	g.CacheDir = CacheDir(getenv)
	g.Actions = Actions{
		Enabled: getenv.get("GITHUB_ACTIONS") == "true",
		Output:  getenv.get("GITHUB_OUTPUT"),
		Summary: getenv.get("GITHUB_STEP_SUMMARY"),
		RunID:   getenv.get("GITHUB_RUN_ID"),
	}
}

// Validate refuses contradictory verbosity and unknown formats.
func (g *GlobalOptions) Validate() error {
	if g.Quiet && g.Verbose {
		return fail.New(fail.Usage, "pass one of them", "--quiet and --verbose contradict each other")
	}
	if g.Output == "yaml" && !g.YAML {
		return fail.New(fail.Usage, "use --output human or --output json (yaml is for `idopipe buildkit create --dry-run`)", "this command has no yaml output")
	}
	if g.Output != "human" && g.Output != "json" && g.Output != "yaml" {
		return fail.New(fail.Usage, "use --output human or --output json", "unknown output format %q", g.Output)
	}
	return nil
}

// JSON says whether results are JSON.
func (g *GlobalOptions) JSON() bool { return g.Output == "json" }

// CacheDir is the user's cache directory: $XDG_CACHE_HOME, else
// $HOME/.cache; "" when neither is set.
func CacheDir(getenv Getenv) string {
	if d := getenv.get("XDG_CACHE_HOME"); d != "" {
		return d
	}
	if h := getenv.get("HOME"); h != "" {
		return filepath.Join(h, ".cache")
	}
	return ""
}
