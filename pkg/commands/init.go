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
)

func newInitCommand(env Env, g *options.GlobalOptions) *cobra.Command {
	var dir, out string
	var force bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a commented idopipe.yaml for an IDO checkout",
		Long: `init looks at an Intent Driven Orchestration checkout (--source) and writes
idopipe.yaml: the planner image and its Dockerfile, the owner from the git
remote, the upstream manifest and CRDs, namespace and pull Secret. Every key is
a flag name of idopipe release; flags and $IDOPIPE_* override the file.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			if _, err := os.Stat(out); err == nil && !force {
				return fail.New(fail.Usage, "pass --force to overwrite it", "%s exists", out)
			}
			text, err := initConfig(dir)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
				return fail.Wrap(fail.Usage, err, "", "cannot write %s", out)
			}
			return finish(env, g, nil, "wrote "+out, map[string]string{"config": out}, nil)
		},
	}
	cmd.Flags().StringVar(&dir, "source", ".", "the IDO checkout")
	cmd.Flags().StringVar(&out, "out", DefaultConfig, "file to write")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing file")
	return cmd
}

var githubRemote = regexp.MustCompile(`github\.com[:/]([^/]+)/`)

// initConfig renders the config for the checkout at dir.
func initConfig(dir string) (string, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", fail.New(fail.Usage, "pass --source DIR, an IDO checkout", "%s is not a directory", dir)
	}
	exists := func(p string) bool { _, err := os.Stat(filepath.Join(dir, p)); return !errors.Is(err, fs.ErrNotExist) }
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
	b.WriteString("# The images to build: the first is the planner (what make controller-images\n# builds); add actuator plugins with their own source/file.\n")
	fmt.Fprintf(&b, "images:\n  - name: planner\n    source: %s\n    file: %s\n    version: \"0.4.0\"\n\n", dir, filepath.Join(dir, "Dockerfile"))
	if !exists("Dockerfile") {
		b.WriteString("# NOTE: no Dockerfile found in the checkout; fix file: above.\n\n")
	}
	b.WriteString("# Where the image goes: ghcr.io/<owner>/planner:<version>. The token comes\n# from $GITHUB_TOKEN, --token-file or ./.github-token, never from this file.\n")
	fmt.Fprintf(&b, "registry: ghcr.io\nowner: %s\n\n", owner)
	b.WriteString("# What is deployed, and where.\n")
	fmt.Fprintf(&b, "manifest:\n  - %s\ncrds:\n  - %s\n", filepath.Join(dir, manifest), filepath.Join(dir, crds))
	if !exists(manifest) || !exists(crds) {
		b.WriteString("# NOTE: the upstream manifest or CRDs were not found in the checkout; fix the paths above.\n")
	}
	b.WriteString("namespace: ido\nsecret-name: ghcr-secret\n\n# Build for the nodes' platforms (comma-separated).\nplatform: linux/amd64\n\n# How long to wait for the Pods, and for another release's lock.\ntimeout: 5m\nlock-timeout: 5m\n")
	return b.String(), nil
}
