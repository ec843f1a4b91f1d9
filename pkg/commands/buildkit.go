package commands

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/buildkitd"
	"github.com/idopipe/idopipe/pkg/commands/options"
)

// newBuildKitCommand manages idopipe's own buildkitd, the one builds use
// when no --buildkit-host or $BUILDKIT_HOST names a daemon.
func newBuildKitCommand(env Env, g *options.GlobalOptions) *cobra.Command {
	var binary string
	cmd := &cobra.Command{
		Use:   "buildkit",
		Short: "Manage idopipe's own buildkitd (used when no --buildkit-host or $BUILDKIT_HOST is set)",
		Long: `Without --buildkit-host or $BUILDKIT_HOST, idopipe builds on its own buildkitd:
found on $PATH (or --buildkitd-path), started on first use with its state under
the user's cache directory, and reused by later runs until stopped.`,
		Args: usageArgs(cobra.NoArgs),
	}
	show := func(st buildkitd.Status, human string) error {
		return finish(env, g, nil, human, st, nil)
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Say whether idopipe's buildkitd runs, where, and which version",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			m, err := newManaged(g, binary, env.Getenv("PATH"))
			if err != nil {
				return err
			}
			st, err := m.Status(c.Context())
			if err != nil {
				return err
			}
			if !st.Running {
				return show(st, fmt.Sprintf("idopipe's buildkitd is not running (state in %s); the next build starts it", st.Dir))
			}
			return show(st, fmt.Sprintf("idopipe's buildkitd %s is running (pid %d) at %s, state in %s", st.Version, st.PID, st.Address, st.Dir))
		},
	}
	start := &cobra.Command{
		Use:   "start",
		Short: "Start idopipe's buildkitd now rather than at the next build",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			m, err := newManaged(g, binary, env.Getenv("PATH"))
			if err != nil {
				return err
			}
			st, err := m.Start(c.Context())
			if err != nil {
				return err
			}
			verb := "was already running"
			if st.Started {
				verb = "started"
			}
			return show(st, fmt.Sprintf("idopipe's buildkitd %s %s (pid %d) at %s", st.Version, verb, st.PID, st.Address))
		},
	}
	stop := &cobra.Command{
		Use:   "stop",
		Short: "Stop idopipe's buildkitd (its cache stays for the next start)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			m, err := newManaged(g, binary, env.Getenv("PATH"))
			if err != nil {
				return err
			}
			st, _ := m.Status(c.Context())
			was, err := m.Stop(c.Context(), 10*time.Second)
			if err != nil {
				return err
			}
			st.Running = false
			if !was {
				return show(st, "idopipe's buildkitd was not running")
			}
			return show(st, fmt.Sprintf("stopped idopipe's buildkitd (pid %d); its cache stays in %s", st.PID, st.Dir))
		},
	}
	options.AddBuildkitdPathFlag(start.Flags(), &binary)
	cmd.AddCommand(status, start, stop)
	return cmd
}
