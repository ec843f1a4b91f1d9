// Command idopipe builds, pushes, verifies and deploys the IDO planner.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/containerd/log"

	"github.com/idopipe/idopipe/pkg/commands"
)

func main() {
	// containerd's content store (the OCI layouts BuildKit reads and writes)
	// logs through logrus; its warnings (no fsverity on this filesystem) are
	// noise in a CLI's output.
	_ = log.SetLevel("error")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := commands.Execute(ctx, commands.OSEnv(), os.Args[1:])
	stop()
	os.Exit(code)
}
