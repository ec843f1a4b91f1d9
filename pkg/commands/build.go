package commands

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/buildkitd"
	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/pipeline"
)

func newBuildCommand(env Env, g *globalOptions) *cobra.Command {
	var img imageOptions
	var b buildOptions
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build the image with BuildKit into an OCI image layout",
		Example: `  # what "make controller-images" does, through BuildKit
  idopipe build --source . --file Dockerfile --image-name planner --version 0.4.0

  # both architectures in one image index, reproducibly (SOURCE_DATE_EPOCH
  # from the last commit), with the registry as a shared build cache
  idopipe build --platform linux/amd64,linux/arm64 \
    --cache-from type=registry,ref=ghcr.io/my-org/planner:buildcache \
    --cache-to type=registry,ref=ghcr.io/my-org/planner:buildcache,mode=max`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if b.Layout == "" {
				b.Layout = defaultLayout
			}
			r := g.reporter(env, nil)
			var res build.Result
			err := pipeline.RunStage(c.Context(), "build", func(ctx context.Context) (string, error) {
				var err error
				res, err = build.Build(ctx, b.spec(img), b.clientOptions(env, progressOr(g, env))...)
				return res.Digest, err
			}, r)
			return finish(env, g, r, buildSummary(res), res, err)
		},
	}
	img.addFlags(cmd.Flags())
	b.addFlags(cmd.Flags(), true)
	return cmd
}

// buildSummary is the human closing line: the image, its platforms (not
// counting attestations), provenance and the cache's share.
func buildSummary(res build.Result) string {
	line := "built " + res.Ref + "@" + res.Digest + " into " + res.Layout
	var notes []string
	if len(res.Images) > 1 {
		notes = append(notes, "platforms "+strings.Join(res.Platforms(), ", "))
	} else if len(res.Images) == 1 {
		notes = append(notes, res.Images[0].Platform)
	}
	if n := len(res.Attestations); n > 0 {
		notes = append(notes, fmt.Sprintf("%d provenance attestation(s)", n))
	}
	if res.SourceDateEpoch != "" {
		notes = append(notes, "SOURCE_DATE_EPOCH "+res.SourceDateEpoch)
	}
	if res.Steps > 0 {
		notes = append(notes, fmt.Sprintf("%d/%d steps cached", res.Cached, res.Steps))
	}
	if len(notes) == 0 {
		return line
	}
	return line + " (" + strings.Join(notes, "; ") + ")"
}

// envCredentials give buildkitd the registry token from the environment
// ($GITHUB_ACTOR, $GITHUB_TOKEN, …, as push reads it) for the hosts of the
// build's registry caches; other hosts fall back to the docker config.
type envCredentials struct {
	env  Env
	spec build.Spec
}

func (c envCredentials) Lookup(host string) (string, string, bool) {
	if !slices.Contains(build.CacheHosts(c.spec), host) {
		return "", "", false
	}
	cr, err := creds.Resolve(creds.Options{Getenv: c.env.Getenv, Warn: func(string) {}})
	if err != nil {
		return "", "", false
	}
	return cr.Username, cr.Token.Reveal(), true
}

// managedDaemon is the daemon of a build that names none: the system
// buildkitd at its default socket when it answers, else idopipe's own,
// started when needed; the choice is said in one line on w.
func managedDaemon(env Env, binary string, w io.Writer) build.Daemon {
	m, err := newManaged(env, binary)
	if err != nil {
		return failedDaemon{err}
	}
	m.System = build.DefaultAddress
	m.Notify = func(s string) { fmt.Fprintln(w, "idopipe: "+s) }
	return m
}

func newManaged(env Env, binary string) (*buildkitd.Managed, error) {
	dir, err := buildkitd.DefaultDir(env.Getenv)
	if err != nil {
		return nil, err
	}
	return &buildkitd.Managed{Dir: dir, Binary: binary, Path: env.Getenv("PATH")}, nil
}

type failedDaemon struct{ err error }

func (d failedDaemon) Address(context.Context) (string, error) { return "", d.err }
