package commands

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/buildkitd"
	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/pipeline"
)

func newBuildCommand(env Env, g *globalOptions) *cobra.Command {
	var img imageOptions
	var b buildOptions
	var reg registryOptions
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
			r := g.reporter(env, nil)
			var res build.Result
			err := pipeline.RunStage(c.Context(), "build", func(ctx context.Context) (string, error) {
				if b.Layout == "" {
					var err error
					if b.Layout, err = build.DefaultLayout(env.Getenv, img.Name); err != nil {
						return "", err
					}
				}
				spec := b.spec(img)
				bc := newBuildCredentials(reg.Registry, spec, func() (creds.Credentials, error) {
					return reg.credentials(env, reg.Registry, warner(r))
				})
				var err error
				res, err = build.Build(ctx, spec, b.clientOptions(env, progressOr(g, env), bc)...)
				return res.Digest, err
			}, r)
			return finish(env, g, r, buildSummary(res), res, err)
		},
	}
	img.addFlags(cmd.Flags())
	b.addFlags(cmd.Flags(), true)
	// The push credentials, for a private base or cache image on the
	// registry idopipe pushes to.
	cmd.Flags().StringVar(&reg.Registry, "registry", "ghcr.io", "registry idopipe pushes to: base and cache images there are pulled with the push token")
	cmd.Flags().StringVar(&reg.Username, "username", "", "registry username (default $GITHUB_ACTOR)")
	cmd.Flags().StringVar(&reg.TokenFile, "token-file", "", "file holding the registry token (default $GITHUB_TOKEN, $GHCR_TOKEN, else ./"+creds.DefaultTokenFile+", else the docker config)")
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

// buildCredentials give buildkitd the credentials idopipe pushes with
// (--token-file, $GITHUB_TOKEN, …, then the docker config) for the
// registry it pushes to and for the hosts of the build's registry caches:
// a private base image next to the planner is pulled with them. Other
// hosts get what the docker config holds for them (pkg/build), never this
// token.
type buildCredentials struct {
	hosts   []string
	resolve func() (creds.Credentials, error)
}

func newBuildCredentials(registry string, spec build.Spec, resolve func() (creds.Credentials, error)) buildCredentials {
	hosts := build.CacheHosts(spec)
	if registry != "" && !slices.Contains(hosts, registry) {
		hosts = append(hosts, registry)
	}
	return buildCredentials{hosts: hosts, resolve: sync.OnceValues(resolve)}
}

// Lookup implements build.Credentials.
func (c buildCredentials) Lookup(host string) (build.Credential, bool) {
	if !slices.Contains(c.hosts, host) {
		return build.Credential{}, false
	}
	cr, err := c.resolve()
	if err != nil {
		return build.Credential{}, false
	}
	return build.Credential{Username: cr.Username, Secret: cr.Token.Reveal(), Source: "the token from " + cr.Source + " (user " + cr.Username + ")"}, true
}

// Hint implements build.Hinter: how to give host credentials, asking only
// for what is missing.
func (c buildCredentials) Hint(host string) string {
	cr, err := c.resolve()
	if slices.Contains(c.hosts, host) {
		if err != nil {
			return err.Error()
		}
		return "" // it had the token: the registry refused it
	}
	if err == nil {
		return "the token from " + cr.Source + " is sent only to " + strings.Join(c.hosts, ", ") + ": run `docker login " + host + "` for " + host
	}
	return "run `docker login " + host + "` (idopipe's own token goes only to " + strings.Join(c.hosts, ", ") + ")"
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
