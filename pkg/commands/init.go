package commands

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/plugins"
)

func newInitCommand(env Env, g *options.GlobalOptions) *cobra.Command {
	var dir, out string
	var force, withPlugins bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a commented idopipe.yaml for an IDO checkout",
		Long: `init looks at an Intent Driven Orchestration checkout (--source) and writes
idopipe.yaml: the planner image and its Dockerfile, the owner from the git
remote, the upstream manifest and CRDs, namespace and pull Secret. Every key is
a flag name of idopipe release; flags and $IDOPIPE_* override the file.

The actuator plugins (each plugins/<dir>/Dockerfile with its *-plugin.yaml
manifest beside it) are written as extra images, named for the image their
manifest's container runs, and their manifests beside the planner's:
commented out, or active with --plugins.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			if _, err := os.Stat(out); err == nil && !force {
				return fail.New(fail.Usage, "pass --force to overwrite it", "%s exists", out)
			}
			text, found, notes, err := initConfig(dir, withPlugins)
			if err != nil {
				return err
			}
			for _, n := range notes {
				fmt.Fprintln(env.Stderr, "note: "+n)
			}
			names := []string{}
			for _, p := range found {
				names = append(names, p.Name)
			}
			if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
				return fail.Wrap(fail.Usage, err, "", "cannot write %s", out)
			}
			summary := "wrote " + out
			switch {
			case len(names) > 0 && withPlugins:
				summary += fmt.Sprintf(" with %d plugins (%s)", len(names), strings.Join(names, ", "))
			case len(names) > 0:
				summary += fmt.Sprintf(" with %d plugins commented out (%s; --plugins releases them)", len(names), strings.Join(names, ", "))
			}
			return finish(env, g, nil, summary, initResult{Config: out, Plugins: names, Active: withPlugins, Notes: notes}, nil)
		},
	}
	cmd.Flags().StringVar(&dir, "source", ".", "the IDO checkout")
	cmd.Flags().StringVar(&out, "out", DefaultConfig, "file to write")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing file")
	cmd.Flags().BoolVar(&withPlugins, "plugins", false, "release the actuator plugins found under plugins/ too (else they are written commented out)")
	return cmd
}

var githubRemote = regexp.MustCompile(`github\.com[:/]([^/]+)/`)

// initConfig renders the config for the checkout at dir, with the
// plugins found under plugins/ active when withPlugins, else commented
// out; notes are the plugin directories left out, and why.
func initConfig(dir string, withPlugins bool) (string, []plugins.Plugin, []string, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", nil, nil, fail.New(fail.Usage, "pass --source DIR, an IDO checkout", "%s is not a directory", dir)
	}
	exists := func(p string) bool { _, err := os.Stat(filepath.Join(dir, p)); return !errors.Is(err, fs.ErrNotExist) }
	found, notes, err := plugins.Discover(dir, "planner")
	if err != nil {
		return "", nil, nil, fail.Wrap(fail.Usage, err, "fix the checkout's plugins directory", "cannot look for plugins in %s", dir)
	}
	// A plugin line is active with --plugins, else commented out.
	prefix := "# "
	if withPlugins {
		prefix = ""
	}
	owner := "OWNER # your GitHub user or organisation"
	if b, err := exec.Command("git", "-C", dir, "remote", "get-url", "origin").Output(); err == nil {
		if m := githubRemote.FindSubmatch(bytes.TrimSpace(b)); m != nil {
			owner = strings.ToLower(string(m[1]))
		}
	}
	manifest, crds := "artefacts/deploy/manifest.yaml", "artefacts/intents_crds_v1alpha1.yaml"
	var b strings.Builder
	fmt.Fprintf(&b, "# idopipe release settings for the IDO checkout at %s.\n", dir)
	b.WriteString("# Keys are the flags of `idopipe release`; a flag or $IDOPIPE_<KEY> overrides them.\n\n")
	b.WriteString("# The images to build: the first is the planner (what make controller-images\n# builds), then the actuator plugins, each named for the image its manifest's\n# container runs, built with the checkout as the context.\n")
	fmt.Fprintf(&b, "images:\n  - name: planner\n    source: %s\n    file: %s\n    version: \"0.4.0\"\n", dir, filepath.Join(dir, "Dockerfile"))
	if len(found) > 0 && !withPlugins {
		b.WriteString("  # The actuator plugins: uncomment to release them too (or run init --plugins).\n")
	}
	for _, p := range found {
		fmt.Fprintf(&b, "  %s- name: %s\n  %s  source: %s\n  %s  file: %s\n  %s  version: \"0.4.0\"\n",
			prefix, p.Name, prefix, dir, prefix, filepath.Join(dir, filepath.FromSlash(p.Dockerfile)), prefix)
	}
	b.WriteString("\n")
	if !exists("Dockerfile") {
		b.WriteString("# NOTE: no Dockerfile found in the checkout; fix file: above.\n\n")
	}
	for _, n := range notes {
		fmt.Fprintf(&b, "# NOTE: %s\n", n)
	}
	if len(notes) > 0 {
		b.WriteString("\n")
	}
	b.WriteString("# Where the image goes: ghcr.io/<owner>/planner:<version>. The token comes\n# from $GITHUB_TOKEN, --token-file or ./.github-token, never from this file.\n")
	fmt.Fprintf(&b, "registry: ghcr.io\nowner: %s\n\n", owner)
	b.WriteString("# What is deployed, and where.\n")
	fmt.Fprintf(&b, "manifest:\n  - %s\n", filepath.Join(dir, manifest))
	for _, p := range found {
		fmt.Fprintf(&b, "  %s- %s\n", prefix, filepath.Join(dir, filepath.FromSlash(p.Manifest)))
	}
	fmt.Fprintf(&b, "crds:\n  - %s\n", filepath.Join(dir, crds))
	if !exists(manifest) || !exists(crds) {
		b.WriteString("# NOTE: the upstream manifest or CRDs were not found in the checkout; fix the paths above.\n")
	}
	b.WriteString("namespace: ido\nsecret-name: ghcr-secret\n\n# Build for the nodes' platforms (comma-separated).\nplatform: linux/amd64\n\n# How long to wait for the Pods, and for another release's lock.\ntimeout: 5m\nlock-timeout: 5m\n")
	return b.String(), found, notes, nil
}

// initResult is init's -o json result.
type initResult struct {
	Config  string   `json:"config"`
	Plugins []string `json:"plugins"` // the plugins' image names, as written
	Active  bool     `json:"pluginsActive"`
	Notes   []string `json:"notes,omitempty"` // plugin directories left out, and why
}
