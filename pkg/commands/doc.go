// Package commands holds idopipe's cobra commands, one file per command.
//
// A command's flags are the groups of pkg/commands/options (global and
// output, image, build, buildkit, progress, registry, push, sign,
// verify-key, kubectl, cluster, stages). Flags, $IDOPIPE_<FLAG> and the
// config file are resolved into them once (config.go: flags override the
// environment, which overrides the file); then each command runs Complete
// (defaults from the environment, read through Env.Getenv and nowhere
// else), Validate (a usage error, exit 2, before any work) and Run, which
// makes one call into pkg/pipeline or a stage package. wire.go is the one
// place that turns options into pipeline.Options and pipeline.Deps, the
// reporter and the progress displays. Output goes only through Env.Stdout
// and Env.Stderr, so that commands run in tests.
//
// Exit codes are the failure's class (pkg/fail), except diff's (exit.go):
// 0 nothing to change, 1 differences, above 1 an error.
package commands
