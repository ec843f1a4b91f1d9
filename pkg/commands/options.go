package commands

import (
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
	"github.com/idopipe/idopipe/pkg/report"
)

// Env is what a command reads from its surroundings; tests inject their own.
type Env struct {
	Getenv func(string) string
	Stdout io.Writer
	Stderr io.Writer
}

// OSEnv is the process's environment and standard streams.
func OSEnv() Env { return Env{Getenv: os.Getenv, Stdout: os.Stdout, Stderr: os.Stderr} }

// globalOptions apply to every command.
type globalOptions struct {
	Output string // human or json
}

func (g *globalOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&g.Output, "output", "o", "human", "output format: human or json (one JSON event per line, then a result object)")
}

func (g *globalOptions) validate() error {
	if g.Output != "human" && g.Output != "json" {
		return fail.New(fail.Usage, "use --output human or --output json", "unknown output format %q", g.Output)
	}
	return nil
}

// reporter renders events on stdout in the chosen format.
func (g *globalOptions) reporter(env Env, redact report.Redactor) report.Reporter {
	if g.Output == "json" {
		return report.NewJSON(env.Stdout, redact)
	}
	return report.NewHuman(env.Stdout, redact)
}

// imageOptions name the image.
type imageOptions struct {
	Name    string
	Version string
}

func (o *imageOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Name, "image-name", "planner", "image name; containers whose image has this name get the pushed image")
	fs.StringVar(&o.Version, "version", "0.4.0", "image version (the tag)")
}

// buildOptions are the build stage's flags.
type buildOptions struct {
	Context    string
	Dockerfile string
	NoCache    bool
	Pull       bool
	BuildArgs  map[string]string
	Target     string
	Contexts   map[string]string
	Host       string
	Progress   string
	Layout     string
}

func (o *buildOptions) addFlags(fs *pflag.FlagSet, withLayout bool) {
	fs.StringVar(&o.Context, "source", ".", "build context directory (the IDO checkout); --context is kubectl's")
	fs.StringVarP(&o.Dockerfile, "file", "f", "", "Dockerfile path (default SOURCE/Dockerfile)")
	fs.BoolVar(&o.NoCache, "no-cache", false, "do not use BuildKit's cache")
	fs.BoolVar(&o.Pull, "pull", false, "always resolve base images anew")
	fs.StringToStringVar(&o.BuildArgs, "build-arg", nil, "build argument KEY=VALUE (repeatable)")
	fs.StringVar(&o.Target, "target", "", "Dockerfile stage to build")
	fs.StringToStringVar(&o.Contexts, "build-context", nil, "named build context NAME=oci-layout:///dir[@sha256:…] or NAME=docker-image://ref (repeatable)")
	fs.StringVar(&o.Host, "buildkit-host", "", "buildkitd address (default $BUILDKIT_HOST, else "+build.DefaultAddress+")")
	fs.StringVar(&o.Progress, "progress", "auto", "BuildKit progress display: auto, tty, plain, rawjson or quiet")
	if withLayout {
		fs.StringVar(&o.Layout, "oci-layout", "", "OCI image layout directory for the built image (default .idopipe/oci)")
	}
}

func (o *buildOptions) spec(img imageOptions) build.Spec {
	df := o.Dockerfile
	if df == "" {
		df = filepath.Join(o.Context, "Dockerfile")
	}
	return build.Spec{
		Context: o.Context, Dockerfile: df, Name: img.Name, Version: img.Version,
		NoCache: o.NoCache, Pull: o.Pull, BuildArgs: o.BuildArgs, Target: o.Target,
		Contexts: o.Contexts, Layout: o.Layout,
	}
}

func (o *buildOptions) clientOptions(env Env, progress io.Writer) []build.Option {
	host := o.Host
	if host == "" {
		host = env.Getenv("BUILDKIT_HOST")
	}
	if host == "" {
		host = build.DefaultAddress
	}
	return []build.Option{build.WithAddress(host), build.WithProgress(progress, o.Progress)}
}

// defaultLayout is where `idopipe build` writes and `idopipe push` reads.
const defaultLayout = ".idopipe/oci"

// registryOptions say where to push and with which credentials.
type registryOptions struct {
	Registry  string
	Owner     string
	Username  string
	TokenFile string
	CAFile    string
	Jobs      int
}

func (o *registryOptions) addFlags(fs *pflag.FlagSet, withTarget bool) {
	fs.IntVar(&o.Jobs, "jobs", 4, "concurrent blob transfers")
	if withTarget {
		fs.StringVar(&o.Registry, "registry", "ghcr.io", "registry host")
		fs.StringVar(&o.Owner, "owner", "", "registry owner (GitHub user or organisation; default $GITHUB_REPOSITORY_OWNER), lowercased")
	}
	fs.StringVar(&o.Username, "username", "", "registry username (default $GITHUB_ACTOR)")
	fs.StringVar(&o.TokenFile, "token-file", "", "file holding the registry token (default $GITHUB_TOKEN, $GHCR_TOKEN, else ./"+creds.DefaultTokenFile+")")
	fs.StringVar(&o.CAFile, "registry-ca", "", "PEM file with extra CA certificates for the registry")
}

func (o *registryOptions) owner(env Env) string {
	if o.Owner != "" {
		return o.Owner
	}
	return env.Getenv("GITHUB_REPOSITORY_OWNER")
}

// credentials resolves the token for registryHost ("" when unknown, which
// skips the docker config).
func (o *registryOptions) credentials(env Env, registryHost string, warn func(string)) (creds.Credentials, error) {
	return creds.Resolve(creds.Options{
		Username: o.Username, TokenFile: o.TokenFile, Getenv: env.Getenv, Warn: warn,
		Registry: registryHost, Keychain: authn.DefaultKeychain,
	})
}

func (o *registryOptions) access(c *creds.Credentials) registry.Access {
	return registry.Access{Creds: c, CAFile: o.CAFile, Jobs: o.Jobs}
}

// pushOptions are push's own flags, shared by push and release.
type pushOptions struct {
	Tags []string
}

func (o *pushOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&o.Tags, "tag", nil, "extra tag for the same image, e.g. latest (repeatable)")
}

// clusterOptions are kubectl's connection flags plus the release's own.
type clusterOptions struct {
	Flags      *genericclioptions.ConfigFlags
	Manifests  []string
	CRDs       []string
	SecretName string
	Pin        bool
	Force      bool
	NoRecreate bool
	DryRun     bool
	Timeout    time.Duration
}

func newClusterOptions() *clusterOptions {
	return &clusterOptions{Flags: newKubeFlags()}
}

// newKubeFlags are kubectl's connection flags (--kubeconfig, --context, -n
// defaulting to ido, ...).
func newKubeFlags() *genericclioptions.ConfigFlags {
	f := genericclioptions.NewConfigFlags(true)
	// Keep kubectl's connection flags; drop those that would clash with the
	// registry's (--username, --password, --token) or invite secrets in argv.
	f.Username, f.Password, f.BearerToken = nil, nil, nil
	f.Impersonate, f.ImpersonateUID, f.ImpersonateGroup, f.ImpersonateUserExtra = nil, nil, nil, nil
	f.CacheDir, f.Insecure, f.TLSServerName = nil, nil, nil
	ns := "ido"
	f.Namespace = &ns
	return f
}

func (o *clusterOptions) addFlags(fs *pflag.FlagSet) {
	o.Flags.AddFlags(fs)
	fs.StringArrayVar(&o.Manifests, "manifest", []string{"deploy/manifest.yaml"}, "Kubernetes manifest to apply (repeatable)")
	fs.StringArrayVar(&o.CRDs, "crds", nil, "CustomResourceDefinitions to apply and wait for first (repeatable)")
	fs.StringVar(&o.SecretName, "secret-name", "ghcr-secret", "name of the image-pull Secret")
	fs.BoolVar(&o.Pin, "pin", true, "reference the image by digest in the Pods")
	fs.BoolVar(&o.Force, "force-conflicts", false, "take over fields owned by another field manager")
	fs.BoolVar(&o.NoRecreate, "no-recreate", false, "refuse (instead of deleting and recreating) when a Pod's spec changes")
	fs.BoolVar(&o.DryRun, "dry-run", false, "validate everything and show each object's change; build, push and write nothing")
	fs.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long to wait for the Pods to become Ready")
}

func (o *clusterOptions) namespace() string { return *o.Flags.Namespace }
