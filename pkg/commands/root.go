package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/logs"
	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/report"
)

// Env is what a command reads from its surroundings; tests inject their
// own. Getenv is read here, in pkg/commands, and nowhere below: the
// options' Complete methods turn what it says into values.
type Env struct {
	Getenv func(string) string
	Stdout io.Writer
	Stderr io.Writer
}

// OSEnv is the process's environment and standard streams.
func OSEnv() Env { return Env{Getenv: os.Getenv, Stdout: os.Stdout, Stderr: os.Stderr} }

// DefaultConfig is read when present and --config is not given.
const DefaultConfig = options.DefaultConfig

// NewRoot builds the idopipe command tree.
func NewRoot(env Env) *cobra.Command {
	g := &options.GlobalOptions{}
	root := &cobra.Command{
		Use:   "idopipe",
		Short: "Build, push, verify and deploy the IDO planner in one pipeline",
		Long: `idopipe takes the Intent Driven Orchestration planner from source to a running
Pod: build (BuildKit) → push (GHCR) → verify-pull → pull Secret → apply → wait.
Each stage is also a command of its own.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(c *cobra.Command, _ []string) error {
			path := g.Config
			if path == "" {
				path = DefaultConfig
			}
			if err := applySettings(c, env, path, g.Config != ""); err != nil {
				return err
			}
			g.Complete(env.Getenv)
			g.YAML = c.Annotations[yamlOutput] == "true"
			if g.Verbose {
				// go-containerregistry's loggers; its Debug log (request
				// dumps) stays off.
				logs.Warn.SetOutput(env.Stderr)
				logs.Progress.SetOutput(env.Stderr)
			}
			return g.Validate()
		},
	}
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	g.AddFlags(root.PersistentFlags())
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fail.Wrap(fail.Usage, err, "see `"+c.CommandPath()+" --help`", "bad flag")
	})
	root.AddCommand(
		newReleaseCommand(env, g),
		newBuildCommand(env, g),
		newBuildKitCommand(env, g),
		newPushCommand(env, g),
		newVerifyCommand(env, g),
		newPreflightCommand(env, g),
		newDeployCommand(env, g),
		newDiffCommand(env, g),
		newDoctorCommand(env, g),
		newTeardownCommand(env, g),
		newHistoryCommand(env, g),
		newRollbackCommand(env, g),
		newVersionCommand(env, g),
		newInitCommand(env, g),
		newKeysCommand(env, g),
		newExitCodesHelp(),
	)
	return root
}

// yamlOutput is the annotation of a command that prints objects with -o yaml.
const yamlOutput = "idopipe.dev/output-yaml"

// runner is what a command's options do (as ko's commands): Complete
// fills defaults from the environment, Validate refuses bad values before
// any work, Run does the work.
type runner interface {
	Complete(env Env)
	Validate() error
	Run(ctx context.Context, env Env) error
}

// runCommand is the RunE of a command whose options are o. A refused value
// is reported like any failure (as JSON with -o json); diff gives it its
// exit status.
func runCommand(env Env, g *options.GlobalOptions, o runner) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, _ []string) error {
		o.Complete(env)
		if err := o.Validate(); err != nil {
			return finish(env, g, plainReporter(env, g), "", nil, err)
		}
		return o.Run(c.Context(), env)
	}
}

// usageArgs wraps cobra's argument checks into usage errors.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if err := check(c, args); err != nil {
			return fail.Wrap(fail.Usage, err, "see `"+c.CommandPath()+" --help`", "bad arguments")
		}
		return nil
	}
}

// finish prints the result: as a final JSON object, or as the human
// summary line, and reports a failure as an event.
func finish(env Env, g *options.GlobalOptions, r report.Reporter, summary string, result any, err error) error {
	if g.JSON() {
		out := map[string]any{"kind": "result", "ok": err == nil || isStatus(err), "result": result}
		if err != nil && !isStatus(err) {
			out["error"] = err.Error()
			out["exitCode"] = exitCode(err)
			out["class"] = fail.ClassOf(err).String()
		}
		enc := json.NewEncoder(env.Stdout)
		_ = enc.Encode(out)
		return err
	}
	if (err == nil || isStatus(err)) && summary != "" {
		fmt.Fprintln(env.Stdout, summary)
	}
	return err
}

func newExitCodesHelp() *cobra.Command {
	var table strings.Builder
	writeExitCodes(&table)
	return &cobra.Command{
		Use:   "exit-codes",
		Short: "What idopipe's exit codes mean",
		Long:  table.String(),
		Run: func(c *cobra.Command, _ []string) {
			writeExitCodes(c.OutOrStdout())
		},
	}
}

var classHelp = map[fail.Class]string{
	fail.Internal:    "unexpected error (a bug: please report it)",
	fail.Usage:       "bad flags, arguments or option values",
	fail.Credentials: "registry token or username missing, unreadable or rejected (401/403)",
	fail.Manifest:    "manifest unreadable, invalid, or rejected by the API server's validation",
	fail.Build:       "build context or Dockerfile missing, Dockerfile error, or a build step failed",
	fail.Registry:    "registry unreachable, TLS failure, or push refused",
	fail.Verify:      "the image resolves to another digest than the expected one",
	fail.Cluster:     "API server unreachable, or an object could not be written",
	fail.NotReady:    "Pods not Ready before --timeout, or a non-transient cause found (the diagnosis is printed)",
	fail.NotFound:    "the image, tag or a manifest is not in the registry",
	fail.Platform:    "the image has no manifest for a platform the cluster's nodes run",
	fail.Corrupt:     "a blob is missing or its size or sha256 is wrong (verify-pull --full)",
	fail.Daemon:      "BuildKit cannot be reached, or no buildkitd can be started",
	fail.RateLimit:   "the registry still rate-limits after retries with backoff (429, GitHub's secondary rate limit): wait and rerun",
	fail.Unsigned:    "the image's digest is not signed by any of the keys given (--verify-key, --key)",
	fail.Sigstore:    "Fulcio, the timestamp authority or Rekor unreachable or refusing while signing: the image is pushed but not signed; a rerun signs it",
	fail.LockLost:    "lost the namespace's release lock (not renewed in time: the API server was away, or another release took it); stopped before its next write: rerun, it converges",
	fail.Interrupted: "interrupted (Ctrl-C or SIGTERM); a rerun converges",
}

func writeExitCodes(w io.Writer) {
	fmt.Fprintln(w, "idopipe exits 0 on success, otherwise with the code of the failure's class:")
	for _, c := range fail.Classes() {
		fmt.Fprintf(w, "  %3d  %-12s %s\n", int(c), c, classHelp[c])
	}
	fmt.Fprint(w, diffExitHelp)
}

// Execute runs the command line and returns the process exit code; the
// error, if any, is printed as one line on stderr. A status that is no
// error (diff's differences) only sets the code.
func Execute(ctx context.Context, env Env, args []string) int {
	root := NewRoot(env)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	if isStatus(err) {
		return exitCode(err)
	}
	var fe *fail.Error
	if !errors.As(err, &fe) && ctx.Err() == nil {
		// Our commands classify their errors; what is left is cobra's own
		// (unknown command, flag or argument).
		err = fail.Wrap(fail.Usage, err, "see `idopipe --help`", "bad command line")
	}
	fmt.Fprintln(env.Stderr, "error: "+fail.OneLine(err.Error()))
	return exitCode(err)
}
