package commands

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/moby/buildkit/util/progress/progressui"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/buildkitd"
	"github.com/idopipe/idopipe/pkg/buildkitd/kube"
	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
	"github.com/idopipe/idopipe/pkg/pipeline"
	"github.com/idopipe/idopipe/pkg/publish"
	"github.com/idopipe/idopipe/pkg/report"
	"github.com/idopipe/idopipe/pkg/termbar"
	"github.com/idopipe/idopipe/pkg/verify"
)

// wire.go is the one place that knows both the options (pkg/commands/options)
// and the collaborators a run needs: the reporter and progress displays,
// the credentials, and pipeline.Options and pipeline.Deps.

// reporter renders events on stdout in the chosen format; in a GitHub
// Actions job each stage is also a log group and a failure an error
// annotation. The *report.GitHub is nil outside Actions.
func reporter(env Env, g *options.GlobalOptions, redact report.Redactor) (report.Reporter, *report.GitHub) {
	var r report.Reporter
	cmds := env.Stdout
	if g.JSON() {
		r = report.NewJSON(env.Stdout, redact)
		cmds = env.Stderr // keep stdout JSON lines only; the runner reads both
	} else {
		r = report.NewHuman(env.Stdout, redact)
		if g.Quiet {
			r = quiet{r}
		}
	}
	if !g.Actions.Enabled {
		return r, nil
	}
	gh := report.NewGitHub(cmds, r, manifest.DocumentLine)
	return gh, gh
}

// plainReporter is the reporter of a command that holds no token.
func plainReporter(env Env, g *options.GlobalOptions) report.Reporter {
	r, _ := reporter(env, g, nil)
	return r
}

// credentialed resolves the registry credentials for host and returns the
// reporter that redacts the token and, in GitHub Actions, masks it before
// anything else is printed.
func credentialed(env Env, g *options.GlobalOptions, reg *options.RegistryOptions, host string) (creds.Credentials, report.Reporter, error) {
	r := plainReporter(env, g)
	cr, err := reg.Credentials(host, warner(r))
	if err != nil {
		return creds.Credentials{}, r, err
	}
	sr, gh := reporter(env, g, cr.Token.Redact)
	if gh != nil {
		gh.Mask(cr.Token.Reveal())
	}
	return cr, sr, nil
}

// warner reports warnings (such as a token file readable by others).
func warner(r report.Reporter) func(string) {
	return func(msg string) { r.Report(report.Event{Kind: report.Warning, Message: msg}) }
}

// quiet passes on only failures, warnings and results.
type quiet struct{ next report.Reporter }

func (q quiet) Report(e report.Event) {
	switch e.Kind {
	case report.StageFail, report.Warning, report.Result:
		q.next.Report(e)
	}
}

// progress is where long work shows progress: stderr, or (with --quiet) a
// writer that drops it.
func progress(env Env, g *options.GlobalOptions) io.Writer {
	if g.Quiet {
		return io.Discard
	}
	return env.Stderr
}

// pushProgress is how a push shows its progress on stderr for a
// --progress mode: a bar redrawn in place on a terminal (auto there, tty),
// a line a second otherwise (plain, rawjson, auto on a pipe or a CI log),
// nothing with quiet or -q.
func pushProgress(env Env, g *options.GlobalOptions, mode string) (publish.Option, error) {
	if g.Quiet || mode == "quiet" {
		return publish.WithProgressBar(nil, nil), nil
	}
	w := env.Stderr
	m, err := build.DisplayMode(w, mode)
	if err != nil {
		return nil, err
	}
	if m != progressui.TtyMode {
		return publish.WithProgressBar(w, nil), nil
	}
	return publish.WithProgressBar(w, func(w io.Writer, label string) publish.Bar { return termbar.New(w, label) }), nil
}

// builder is the BuildKit client of a build or release: --buildkit-host
// (or $BUILDKIT_HOST), else the system daemon or idopipe's own; registries
// get c (base images, registry caches).
//
// A kube://NAMESPACE/NAME builder is reached with kubeconfig: the
// command's kubeconfig flags when it has them (nil: $KUBECONFIG, else
// ~/.kube/config, at its current context).
//
// cacheNote (options.BuildOptions.DefaultCache's line) is said on the
// progress stream as the build starts; a cache export that failed without
// failing the build is said as it ends.
func builder(env Env, g *options.GlobalOptions, bk *options.BuildKitOptions, b *options.BuildOptions, mode string, c build.Credentials, kubeconfig genericclioptions.RESTClientGetter, cacheNote string) pipeline.Builder {
	w := progress(env, g)
	opts := []build.Option{
		build.WithProgress(w, mode),
		build.WithTLS(bk.TLS),
		build.WithEnv(b.SecretEnv),
		build.WithCredentials(c),
	}
	switch {
	case bk.InCluster():
		opts = append(opts, build.WithDialer(kubeDialer(bk.Host, kubeconfig, w, g)))
	case !bk.Managed():
		opts = append(opts, build.WithAddress(bk.Host))
	default:
		opts = append(opts, build.WithDaemon(managedDaemon(g, bk, w)))
	}
	if mode == "quiet" {
		cacheNote = "" // progress; a failed cache export is still said
	}
	return cacheReporter{Builder: build.NewBuilder(opts...), w: w, note: cacheNote}
}

// cacheReporter says which build cache a build uses before it runs, and
// which cache exports failed without failing it (the default registry
// cache's, whose failure costs only the next build's warm start).
type cacheReporter struct {
	*build.Builder
	w    io.Writer
	note string
}

// Build implements pipeline.Builder.
func (c cacheReporter) Build(ctx context.Context, specs []build.Spec) ([]build.Result, error) {
	if c.note != "" {
		fmt.Fprintln(c.w, "idopipe: "+c.note)
	}
	results, err := c.Builder.Build(ctx, specs)
	for i, r := range results {
		for _, e := range r.CacheErrors {
			fmt.Fprintf(c.w, "idopipe: warning: %s built, but its build cache was not exported (%s); the next build on another replica starts cold\n", specs[i].Name, e)
		}
	}
	return results, err
}

// kubeDialer reaches builder addr (kube://NAMESPACE/NAME) through the API
// server of kubeconfig; which replica a build goes to is said on w.
func kubeDialer(addr string, kubeconfig genericclioptions.RESTClientGetter, w io.Writer, g *options.GlobalOptions) build.Dialer {
	ns, name, err := kube.ParseAddress(addr)
	if err != nil {
		return failedDialer{addr, err}
	}
	if kubeconfig == nil {
		kubeconfig = genericclioptions.NewConfigFlags(false)
	}
	cfg, err := kubeconfig.ToRESTConfig()
	if err != nil {
		return failedDialer{addr, fail.Wrap(fail.Cluster, err, "check --kubeconfig, $KUBECONFIG and --context", "builder %s: cannot load the kubeconfig", addr)}
	}
	d, err := kube.NewDialer(cfg, ns, name)
	if err != nil {
		return failedDialer{addr, err}
	}
	if !g.Quiet {
		d.Notify = func(s string) { fmt.Fprintln(w, "idopipe: "+s) }
	}
	return kubeRouter{d}
}

// kubeRouter is a builder in a cluster as pkg/build routes platforms: a
// builder made with --platform builds each platform on the builder of
// its own.
type kubeRouter struct{ *kube.Dialer }

// Route implements build.PlatformRouter.
func (k kubeRouter) Route(ctx context.Context, platforms []string) ([]build.Dialer, error) {
	members, err := k.ForPlatforms(ctx, platforms)
	if err != nil || members == nil {
		return nil, err
	}
	out := make([]build.Dialer, len(members))
	for i, m := range members {
		out[i] = m
	}
	return out, nil
}

type failedDialer struct {
	addr string
	err  error
}

func (d failedDialer) Dial(context.Context, string) (net.Conn, error) { return nil, d.err }
func (d failedDialer) String() string                                 { return d.addr }

// managedDaemon is the daemon of a build that names none: the system
// buildkitd at its default socket when it answers, else idopipe's own,
// started when needed; the choice is said in one line on w.
func managedDaemon(g *options.GlobalOptions, bk *options.BuildKitOptions, w io.Writer) build.Daemon {
	m, err := newManaged(g, bk.BuildkitdPath, bk.Path)
	if err != nil {
		return failedDaemon{err}
	}
	m.System = build.DefaultAddress
	m.Notify = func(s string) { fmt.Fprintln(w, "idopipe: "+s) }
	return m
}

func newManaged(g *options.GlobalOptions, binary, path string) (*buildkitd.Managed, error) {
	dir, err := buildkitd.DefaultDir(g.CacheDir)
	if err != nil {
		return nil, err
	}
	return &buildkitd.Managed{Dir: dir, Binary: binary, Path: path}, nil
}

type failedDaemon struct{ err error }

func (d failedDaemon) Address(context.Context) (string, error) { return "", d.err }

// wiring is what the collaborators of a release, deploy or push are made
// of; deps makes them: the builder
// (nil where nothing is built), the publisher and verifier on the
// registry's access with the token, the signer, and the cluster from
// kubectl's flags (nil for none).
type wiring struct {
	builder  pipeline.Builder
	signer   options.ImageSigner
	progress publish.Option
	kube     *options.KubeOptions
	registry *options.RegistryOptions
	creds    *creds.Credentials
}

func (w wiring) deps() pipeline.Deps {
	access := w.registry.Access(w.creds)
	var popts []publish.Option
	if w.progress != nil {
		popts = append(popts, w.progress)
	}
	d := pipeline.Deps{
		Builder:   w.builder,
		Publisher: publish.New(access, popts...),
		Verifier:  verify.New(access),
	}
	if w.signer != nil {
		d.Signer = w.signer
	}
	if w.kube != nil {
		d.Connect = pipeline.Connector(w.kube.Flags)
	}
	return d
}

// target is where images are pushed.
func target(reg *options.RegistryOptions, po *options.PushOptions) pipeline.Target {
	t := pipeline.Target{Registry: reg.Registry, Owner: reg.Owner}
	if po != nil {
		t.Tags, t.MountFrom = po.Tags, po.Mounts
	}
	return t
}

// deployConfig is what the cluster stages apply, where and how.
func deployConfig(kube *options.KubeOptions, cl *options.ClusterOptions) pipeline.DeployConfig {
	return pipeline.DeployConfig{
		Manifests: cl.Manifests, CRDs: cl.CRDs,
		Namespace: kube.Namespace(), SecretName: cl.SecretName,
		Pin: cl.Pin, Force: cl.Force, NoRecreate: cl.NoRecreate,
		Timeout: cl.Timeout, LockHolder: cl.LockHolder, LockTimeout: cl.LockWait,
	}
}

// history is what a writing run records of itself: the GitHub Actions
// run and source commit, else the source's commit as git says; and how
// many revisions are kept.
func history(ctx context.Context, h *options.HistoryOptions, source string) pipeline.History {
	out := pipeline.History{Max: h.Max, Source: cluster.Source{Repository: h.Repository, Commit: h.Commit}}
	if h.Actions {
		out.GitHub = &cluster.GitHubRun{Repository: h.Repository, Workflow: h.Workflow, RunID: h.RunID, RunAttempt: h.RunAttempt, Actor: h.Actor, URL: h.RunURL}
	}
	if out.Source.Commit == "" && source != "" {
		if rev, err := (build.Git{}).Describe(ctx, source); err == nil {
			out.Source = cluster.Source{Repository: rev.Source, Commit: rev.Revision}
		}
	}
	return out
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

func newBuildCredentials(registry string, specs []build.Spec, resolve func() (creds.Credentials, error)) buildCredentials {
	var hosts []string
	for _, s := range specs {
		for _, h := range build.CacheHosts(s) {
			if !slices.Contains(hosts, h) {
				hosts = append(hosts, h)
			}
		}
	}
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
