package commands

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestOneMeaningPerFlagName: a config file key and $IDOPIPE_<NAME> set the
// flag of that name in whichever command runs, so a name must mean the same
// in every command that has it: the same type and default, and the same
// help where the flag comes from one option group. A name that meant a
// private key in one command and a public key in another (--key), or the
// Pod wait in one and the deletion wait in another (--timeout), was a trap.
func TestOneMeaningPerFlagName(t *testing.T) {
	root := NewRoot(Env{Getenv: func(string) string { return "" }, Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}})
	type seen struct {
		cmd, typ, def, usage string
	}
	// Flags whose help differs by command while the meaning is one: the
	// help says what this command does with the same value.
	sameMeaningOtherWords := map[string]bool{
		"image-name": true, // the image's name: the pushed or the deployed one
		"registry":   true, // the registry host; build says what it pulls from it
		"progress":   true, // the progress display; push has no BuildKit display
		"oci-layout": true, // the layout directory; build writes it, push reads it
		"source":     true, // the IDO checkout; build and release build from it, init reads it
		"image":      true, // the image the Pods run: deploy's and diff's to deploy, doctor's to check
		"digest":     true, // the image's digest: push's to push, verify-pull's to expect
		"platform":   true, // the image's platforms: built by build, required by verify-pull
		"force":      true, // overwrite what exists: init's file, keys' key pair
		"kubernetes": true, // the builder in the cluster: buildkit create, rm and status act on it
		"dry-run":    true, // validate, write nothing: a release's plan, a builder's objects
		"help":       true,
	}
	// Flags whose default differs by command while the meaning is one.
	otherDefault := map[string]bool{
		"namespace": true, // the namespace the command acts in: ido for releases, default for a builder (as buildx)
	}
	flags := map[string]seen{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			s := seen{cmd: c.CommandPath(), typ: f.Value.Type(), def: f.DefValue, usage: f.Usage}
			prev, ok := flags[f.Name]
			if !ok {
				flags[f.Name] = s
				return
			}
			if f.Name == "help" {
				return
			}
			if prev.def != s.def && !sameMeaningOtherWords[f.Name] && !otherDefault[f.Name] {
				t.Errorf("--%s defaults to %q in %s but %q in %s", f.Name, prev.def, prev.cmd, s.def, s.cmd)
			}
			if prev.usage != s.usage && !sameMeaningOtherWords[f.Name] {
				t.Errorf("--%s means %q in %s but %q in %s", f.Name, prev.usage, prev.cmd, s.usage, s.cmd)
			}
			if baseType(prev.typ) != baseType(s.typ) {
				t.Errorf("--%s is a %s in %s but a %s in %s", f.Name, prev.typ, prev.cmd, s.typ, s.cmd)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if len(flags) < 30 {
		t.Fatalf("only %d flags seen: the walk is broken", len(flags))
	}
}

// baseType folds pflag's list types: a config file's list sets both.
func baseType(t string) string {
	t = strings.TrimSuffix(t, "Array")
	return strings.TrimSuffix(t, "Slice")
}
