package commands

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/buildkit/util/progress/progressui"
	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
	"github.com/idopipe/idopipe/pkg/pipeline"
	"github.com/idopipe/idopipe/pkg/publish"
	"github.com/idopipe/idopipe/pkg/registry"
	"github.com/idopipe/idopipe/pkg/report"
	"github.com/idopipe/idopipe/pkg/termbar"
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
	Output  string // human or json
	Quiet   bool   // only the result and errors
	Verbose bool   // also the registry client's warnings and requests
	Config  string // --config; "" reads ./idopipe.yaml when present
}

func (g *globalOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVarP(&g.Quiet, "quiet", "q", false, "print only the result (or the error); no stage lines, no progress")
	fs.BoolVarP(&g.Verbose, "verbose", "v", false, "also log the registry client's warnings and requests to stderr")
	fs.StringVar(&g.Config, "config", "", "config file (default ./"+DefaultConfig+" when present); flags override $IDOPIPE_* which override it")
	fs.StringVarP(&g.Output, "output", "o", "human", "output format: human or json (one JSON event per line, then a result object)")
}

func (g *globalOptions) validate() error {
	if g.Quiet && g.Verbose {
		return fail.New(fail.Usage, "pass one of them", "--quiet and --verbose contradict each other")
	}
	if g.Output != "human" && g.Output != "json" {
		return fail.New(fail.Usage, "use --output human or --output json", "unknown output format %q", g.Output)
	}
	return nil
}

// reporter renders events on stdout in the chosen format; in a GitHub
// Actions job (GITHUB_ACTIONS=true) each stage is also a log group and a
// failure an error annotation.
func (g *globalOptions) reporter(env Env, redact report.Redactor) report.Reporter {
	r, _ := g.reporterGH(env, redact)
	return r
}

func (g *globalOptions) reporterGH(env Env, redact report.Redactor) (report.Reporter, *report.GitHub) {
	var r report.Reporter
	cmds := env.Stdout
	if g.Output == "json" {
		r = report.NewJSON(env.Stdout, redact)
		cmds = env.Stderr // keep stdout JSON lines only; the runner reads both
	} else {
		r = report.NewHuman(env.Stdout, redact)
		if g.Quiet {
			r = quiet{r}
		}
	}
	if env.Getenv("GITHUB_ACTIONS") != "true" {
		return r, nil
	}
	gh := report.NewGitHub(cmds, r, manifest.DocumentLine)
	return gh, gh
}

// secretReporter is reporter for a command that holds the token: output is
// redacted, and in GitHub Actions the token is masked before anything else.
func (g *globalOptions) secretReporter(env Env, token creds.Secret) report.Reporter {
	r, gh := g.reporterGH(env, token.Redact)
	if gh != nil {
		gh.Mask(token.Reveal())
	}
	return r
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
	Context         string
	Dockerfile      string
	NoCache         bool
	Pull            bool
	BuildArgs       map[string]string
	Target          string
	Contexts        map[string]string
	Host            string
	Progress        string
	Layout          string
	Platforms       []string
	SourceDateEpoch string
	Provenance      string
	Labels          []string
	Secrets         []string
	CacheFrom       []string
	CacheTo         []string
	TLS             build.TLS
	BuildkitdPath   string
}

func (o *buildOptions) addFlags(fs *pflag.FlagSet, withLayout bool) {
	fs.StringVar(&o.Context, "source", ".", "build context: a directory (the IDO checkout) or a git URL https://…/repo.git#ref; --context is kubectl's")
	fs.StringVarP(&o.Dockerfile, "file", "f", "", "Dockerfile path (default SOURCE/Dockerfile; inside the repository for a git --source)")
	fs.BoolVar(&o.NoCache, "no-cache", false, "do not use BuildKit's cache")
	fs.BoolVar(&o.Pull, "pull", false, "always resolve base images anew")
	fs.StringToStringVar(&o.BuildArgs, "build-arg", nil, "build argument KEY=VALUE (repeatable)")
	fs.StringVar(&o.Target, "target", "", "Dockerfile stage to build")
	fs.StringToStringVar(&o.Contexts, "build-context", nil, "named build context: NAME (what FROM or COPY --from names, e.g. golang:1.24.6) = oci-layout:///DIR[:TAG][@sha256:…], DIR or docker-image://REF (repeatable)")
	fs.StringSliceVar(&o.Platforms, "platform", nil, "platforms to build, e.g. linux/amd64,linux/arm64 (more than one makes an image index; default the daemon's)")
	fs.StringVar(&o.SourceDateEpoch, "source-date-epoch", "", "SOURCE_DATE_EPOCH for reproducible images, seconds since 1970 (default the last commit's time in a git checkout; none to turn off)")
	fs.StringVar(&o.Provenance, "provenance", "false", "attach BuildKit's SLSA provenance attestation: min, max or false")
	fs.StringArrayVar(&o.Labels, "label", nil, "image label KEY=VALUE (repeatable); org.opencontainers.image.{source,revision,version,created} are filled from git")
	fs.StringArrayVar(&o.Secrets, "secret", nil, "build secret id=ID,src=FILE or id=ID,env=VAR for RUN --mount=type=secret (repeatable)")
	fs.StringArrayVar(&o.CacheFrom, "cache-from", nil, "import build cache: type=registry,ref=HOST/REPO:buildcache or type=local,src=DIR (repeatable)")
	fs.StringArrayVar(&o.CacheTo, "cache-to", nil, "export build cache: type=registry,ref=HOST/REPO:buildcache[,mode=max] or type=local,dest=DIR (repeatable)")
	fs.StringVar(&o.Host, "buildkit-host", "", "buildkitd address: unix://, tcp://, docker-container://NAME, kube-pod://POD (default $BUILDKIT_HOST, else idopipe's own buildkitd)")
	fs.StringVar(&o.TLS.CACert, "buildkit-tls-ca", "", "CA certificate (PEM) of a tcp:// buildkitd")
	fs.StringVar(&o.TLS.Cert, "buildkit-tls-cert", "", "client certificate (PEM) for a tcp:// buildkitd's mTLS")
	fs.StringVar(&o.TLS.Key, "buildkit-tls-key", "", "client key (PEM) for a tcp:// buildkitd's mTLS")
	fs.StringVar(&o.TLS.ServerName, "buildkit-tls-server-name", "", "server name to verify a tcp:// buildkitd's certificate against (default its host)")
	fs.StringVar(&o.BuildkitdPath, "buildkitd-path", "", "buildkitd binary for idopipe's own daemon (default buildkitd on $PATH)")
	fs.StringVar(&o.Progress, "progress", "auto", "progress display: auto (tty on a terminal, else plain), tty, plain, rawjson or quiet; BuildKit's for the build, a bar (tty) or a line a second for the push")
	if withLayout {
		fs.StringVar(&o.Layout, "oci-layout", "", "OCI image layout directory for the built image (default ~/.cache/idopipe/oci/IMAGE-NAME)")
	}
}

func (o *buildOptions) spec(img imageOptions) build.Spec {
	df := o.Dockerfile
	if df == "" && !build.IsGitURL(o.Context) {
		df = filepath.Join(o.Context, "Dockerfile")
	}
	labels := map[string]string{}
	for _, l := range o.Labels {
		k, v, _ := strings.Cut(l, "=")
		labels[k] = v
	}
	return build.Spec{
		Context: o.Context, Dockerfile: df, Name: img.Name, Version: img.Version,
		NoCache: o.NoCache, Pull: o.Pull, BuildArgs: o.BuildArgs, Target: o.Target,
		Contexts: o.Contexts, Layout: o.Layout,
		Platforms: o.Platforms, SourceDateEpoch: o.SourceDateEpoch, Provenance: o.Provenance,
		Labels: labels, Secrets: o.Secrets, CacheFrom: o.CacheFrom, CacheTo: o.CacheTo,
	}
}

// clientOptions say which daemon builds and how: --buildkit-host, else
// $BUILDKIT_HOST, else idopipe's own buildkitd (started when needed).
// Registries get c (base images, registry caches).
func (o *buildOptions) clientOptions(env Env, progress io.Writer, c build.Credentials) []build.Option {
	opts := []build.Option{
		build.WithProgress(progress, o.Progress),
		build.WithTLS(o.TLS),
		build.WithGetenv(env.Getenv),
		build.WithCredentials(c),
	}
	host := o.Host
	if host == "" {
		host = env.Getenv("BUILDKIT_HOST")
	}
	if host != "" {
		return append(opts, build.WithAddress(host))
	}
	return append(opts, build.WithDaemon(managedDaemon(env, o.BuildkitdPath, progress)))
}

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
	Tags      []string
	MountFrom []string
}

func (o *pushOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&o.Tags, "tag", nil, "extra tag for the same image, e.g. latest (repeatable)")
	fs.StringArrayVar(&o.MountFrom, "mount-from", nil,
		"repository of the same registry that may hold some of the image's blobs (a base image): the registry mounts them instead of an upload; OWNER/NAME or REGISTRY/OWNER/NAME (repeatable)")
}

// mountFrom parses --mount-from against the target registry: OWNER/NAME
// is a repository of registryHost, and a repository of another registry is
// refused (a registry mounts only blobs it holds).
func (o *pushOptions) mountFrom(registryHost string) ([]name.Repository, error) {
	var out []name.Repository
	if reg, err := name.NewRegistry(registryHost); err == nil {
		registryHost = reg.RegistryStr() // docker.io is index.docker.io
	}
	for _, v := range o.MountFrom {
		// OWNER/NAME is on the target registry, as docker reads a reference.
		repo, err := name.NewRepository(strings.ToLower(v), name.WithDefaultRegistry(registryHost))
		if err != nil {
			return nil, fail.New(fail.Usage, "write --mount-from OWNER/NAME or REGISTRY/OWNER/NAME, without a tag or digest",
				"--mount-from %q is not a repository: %v", v, err)
		}
		if repo.RegistryStr() != registryHost {
			return nil, fail.New(fail.Usage, "name a repository of "+registryHost+": a registry mounts only blobs it holds",
				"--mount-from %q is on registry %s, not %s", v, repo.RegistryStr(), registryHost)
		}
		out = append(out, repo)
	}
	return out, nil
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
	LockWait   time.Duration
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
	fs.DurationVar(&o.LockWait, "lock-timeout", 5*time.Minute, "how long to wait for another release into the namespace to finish")
}

func (o *clusterOptions) namespace() string { return *o.Flags.Namespace }

// fill copies the cluster settings into a release's or deploy's options.
func (o *clusterOptions) fill(p *pipeline.Options, env Env) {
	p.Manifests, p.CRDs, p.Cluster = o.Manifests, o.CRDs, o.Flags
	p.Namespace, p.SecretName = o.namespace(), o.SecretName
	p.Pin, p.Force, p.NoRecreate, p.DryRun = o.Pin, o.Force, o.NoRecreate, o.DryRun
	p.Timeout, p.LockHolder, p.LockTimeout = o.Timeout, lockHolder(env), o.LockWait
}

// credentialed resolves the registry credentials for host and returns the
// reporter that redacts (and in Actions masks) the token.
func (g *globalOptions) credentialed(env Env, reg registryOptions, host string) (creds.Credentials, report.Reporter, error) {
	r := g.reporter(env, nil)
	cr, err := reg.credentials(env, host, warner(r))
	if err != nil {
		return creds.Credentials{}, r, err
	}
	return cr, g.secretReporter(env, cr.Token), nil
}

// lockHolder names this run in the namespace's release lock: who, where,
// which process (and which Actions run).
func lockHolder(env Env) string {
	host, _ := os.Hostname()
	who := env.Getenv("USER")
	if who == "" {
		who = "unknown"
	}
	h := fmt.Sprintf("%s@%s pid %d", who, host, os.Getpid())
	if run := env.Getenv("GITHUB_RUN_ID"); run != "" {
		h += " (GitHub Actions run " + run + ")"
	}
	return h
}

// quiet passes on only failures, warnings and results.
type quiet struct{ next report.Reporter }

func (q quiet) Report(e report.Event) {
	switch e.Kind {
	case report.StageFail, report.Warning, report.Result:
		q.next.Report(e)
	}
}

// progress is where long work shows progress: stderr, or nowhere with --quiet.
func (g *globalOptions) progress(env Env) io.Writer {
	if g.Quiet {
		return nil
	}
	return env.Stderr
}

// pushProgress is how a push shows its progress on stderr for a
// --progress mode: a bar redrawn in place on a terminal (auto there, tty),
// a line a second otherwise (plain, rawjson, auto on a pipe or a CI log),
// nothing with quiet or -q. It returns the writer (nil for none) and the bar
// maker (nil for lines).
func (g *globalOptions) pushProgress(env Env, mode string) (io.Writer, publish.NewBar, error) {
	w := g.progress(env)
	if w == nil || mode == "quiet" {
		return nil, nil, nil
	}
	m, err := build.DisplayMode(w, mode)
	if err != nil {
		return nil, nil, err
	}
	if m != progressui.TtyMode {
		return w, nil, nil
	}
	return w, func(w io.Writer, label string) publish.Bar { return termbar.New(w, label) }, nil
}

// progressOr is BuildKit's progress writer: stderr, or (with --quiet) a
// writer that drops it.
func progressOr(g *globalOptions, env Env) io.Writer {
	if w := g.progress(env); w != nil {
		return w
	}
	return io.Discard
}
