// Package options holds idopipe's flag groups, one file per concern, in the
// manner of ko's pkg/commands/options: each group has AddFlags (its flags on
// a command), Complete where a default comes from the environment (given as
// the one getter of commands.Env, read here and nowhere below), and Validate
// (a fail.Usage error, exit 2, for a value that cannot work). The commands
// resolve flags, $IDOPIPE_* and the config file into these structs once;
// pkg/commands/wire.go turns them into the pipeline's values and
// collaborators.
package options

// Getenv reads one environment variable; commands pass Env.Getenv.
type Getenv func(string) string

func (g Getenv) get(k string) string {
	if g == nil {
		return ""
	}
	return g(k)
}
