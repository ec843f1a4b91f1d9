// Package commands holds idopipe's cobra commands, one file per command.
// Each command parses its flags into an options struct (options.go) and makes
// one call into pkg/pipeline or a stage package; output goes through the
// injected IO streams so that commands can be run in tests.
package commands
