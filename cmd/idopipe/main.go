// Command idopipe builds, pushes, verifies and deploys the IDO planner.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/idopipe/idopipe/pkg/commands"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := commands.Execute(ctx, commands.OSEnv(), os.Args[1:])
	stop()
	os.Exit(code)
}
