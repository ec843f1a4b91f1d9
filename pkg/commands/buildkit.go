package commands

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/buildkitd"
	"github.com/idopipe/idopipe/pkg/buildkitd/kube"
	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/pipeline"
	"github.com/idopipe/idopipe/pkg/report"
)

// newBuildKitCommand manages idopipe's own buildkitd, the one builds use
// when no --buildkit-host or $BUILDKIT_HOST names a daemon.
func newBuildKitCommand(env Env, g *options.GlobalOptions) *cobra.Command {
	var binary string
	cmd := &cobra.Command{
		Use:   "buildkit",
		Short: "Manage idopipe's own buildkitd, and BuildKit builders in a Kubernetes cluster",
		Long: `Without --buildkit-host or $BUILDKIT_HOST, idopipe builds on its own buildkitd:
found on $PATH (or --buildkitd-path), started on first use with its state under
the user's cache directory, and reused by later runs until stopped.`,
		Args: usageArgs(cobra.NoArgs),
	}
	show := func(st buildkitd.Status, human string) error {
		return finish(env, g, nil, human, st, nil)
	}
	var inCluster bool
	statusKube := builderKube()
	status := &cobra.Command{
		Use:   "status [--kubernetes [NAME]]",
		Short: "Say whether idopipe's buildkitd runs, where, and which version; with --kubernetes, whether a builder in the cluster answers",
		Args:  usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, args []string) error {
			if inCluster {
				return builderStatus(c.Context(), env, g, statusKube, builderName(args))
			}
			if len(args) > 0 {
				return finish(env, g, nil, "", nil, fail.New(fail.Usage, "add --kubernetes", "a builder NAME is for --kubernetes: idopipe's own buildkitd has none"))
			}
			m, err := newManaged(g, binary, env.Getenv("PATH"))
			if err != nil {
				return err
			}
			st, err := m.Status(c.Context())
			if err != nil {
				return err
			}
			if !st.Running {
				return show(st, fmt.Sprintf("idopipe's buildkitd is not running (state in %s); the next build starts it", st.Dir))
			}
			return show(st, fmt.Sprintf("idopipe's buildkitd %s is running (pid %d) at %s, state in %s", st.Version, st.PID, st.Address, st.Dir))
		},
	}
	start := &cobra.Command{
		Use:   "start",
		Short: "Start idopipe's buildkitd now rather than at the next build",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			m, err := newManaged(g, binary, env.Getenv("PATH"))
			if err != nil {
				return err
			}
			st, err := m.Start(c.Context())
			if err != nil {
				return err
			}
			verb := "was already running"
			if st.Started {
				verb = "started"
			}
			return show(st, fmt.Sprintf("idopipe's buildkitd %s %s (pid %d) at %s", st.Version, verb, st.PID, st.Address))
		},
	}
	stop := &cobra.Command{
		Use:   "stop",
		Short: "Stop idopipe's buildkitd (its cache stays for the next start)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			m, err := newManaged(g, binary, env.Getenv("PATH"))
			if err != nil {
				return err
			}
			st, _ := m.Status(c.Context())
			was, err := m.Stop(c.Context(), 10*time.Second)
			if err != nil {
				return err
			}
			st.Running = false
			if !was {
				return show(st, "idopipe's buildkitd was not running")
			}
			return show(st, fmt.Sprintf("stopped idopipe's buildkitd (pid %d); its cache stays in %s", st.PID, st.Dir))
		},
	}
	options.AddBuildkitdPathFlag(start.Flags(), &binary)
	status.Flags().BoolVar(&inCluster, "kubernetes", false, "report on builder NAME (default buildkitd) in the cluster: its Ready replicas, and BuildKit answering through the API server")
	statusKube.AddFlags(status.Flags())
	cmd.AddCommand(status, start, stop, newBuildKitCreateCommand(env, g), newBuildKitRmCommand(env, g))
	return cmd
}

// builderKube are the kubeconfig flags of create and rm: -n defaults to
// "default", the namespace every cluster has.
func builderKube() *options.KubeOptions {
	k := options.NewKubeOptions()
	ns := "default"
	k.Flags.Namespace = &ns
	return k
}

func builderName(args []string) string {
	if len(args) == 1 {
		return args[0]
	}
	return "buildkitd"
}

// newBuildKitCreateCommand writes a builder in a cluster by server-side
// apply and waits until it answers.
func newBuildKitCreateCommand(env Env, g *options.GlobalOptions) *cobra.Command {
	var o options.KubeBuilderOptions
	kopts := builderKube()
	cmd := &cobra.Command{
		Use:   "create --kubernetes [NAME]",
		Short: "Create or update a BuildKit builder in a Kubernetes cluster (reach it with --buildkit-host kube://NAMESPACE/NAME)",
		Long: `create writes a builder (default name buildkitd) into an existing namespace by
server-side apply: a Deployment of buildkitd replicas (a StatefulSet with
--storage) and the ConfigMap holding its buildkitd.toml. Run it again with
other options to change the builder. It waits until every replica answers
` + "`buildctl debug workers`" + `.

Builds reach it through the API server alone (pods/exec of ` + "`buildctl dial-stdio`" + `,
no kubectl): --buildkit-host kube://NAMESPACE/NAME, or BUILDKIT_HOST. The
identity in the kubeconfig of a build needs get and list on pods and create
on pods/exec in the namespace (deploy/buildkit/rbac.yaml); create needs to
apply Deployments, StatefulSets and ConfigMaps there.

Builds on a builder import and export a registry cache by default,
REGISTRY/OWNER/IMAGE-NAME:buildcache (mode=max), so any replica, or one that
lost its emptyDir with its Pod, starts warm; --cache-to none turns it off. The
replicas push it themselves with the registry credentials the build's session
lends them (never stored in the cluster); a registry with a private CA needs
--builder-registry-ca, and one only the node reaches (e.g. on its 127.0.0.1)
needs --host-network.

With --platform (repeatable), create makes one builder per platform, as
buildx's kubernetes driver does with one node per platform: NAME-linux-amd64,
NAME-linux-arm64, … each with its own Deployment and ConfigMap, its Pods on
nodes labelled kubernetes.io/os and kubernetes.io/arch of its platform (or
--platform-node-selector PLATFORM=KEY=VALUE), its buildkitd's worker set to
that platform (--oci-worker-platform). A build on kube://NAMESPACE/NAME with
--platform A,B then solves each platform on its own builder at once (each with
its own replica choice and its own registry cache, :buildcache-OS-ARCH), and
joins the platform images (and their provenance) into one image index. A
rerun with fewer platforms deletes the dropped platforms' builders; one
without --platform replaces the per-platform builders with one builder.

The replicas are privileged unless --rootless. --dry-run -o yaml prints the
objects without asking the cluster (deploy/buildkit/buildkitd.yaml is that).`,
		Example: `  idopipe buildkit create --kubernetes -n buildkit --replicas 2 --requests cpu=1,memory=2Gi
  idopipe release --buildkit-host kube://buildkit/buildkitd ...
  idopipe buildkit create --kubernetes -n buildkit --dry-run -o yaml > buildkitd.yaml

  # arm64 natively on the arm64 nodes, amd64 on the amd64 ones, one index
  idopipe buildkit create --kubernetes -n buildkit --platform linux/amd64,linux/arm64
  idopipe release --buildkit-host kube://buildkit/buildkitd --platform linux/amd64,linux/arm64 ...`,
		Args:        usageArgs(cobra.MaximumNArgs(1)),
		Annotations: map[string]string{yamlOutput: "true"},
		RunE: func(c *cobra.Command, args []string) error {
			r := plainReporter(env, g)
			if err := o.Validate(); err != nil {
				return finish(env, g, r, "", nil, err)
			}
			if err := kopts.Validate(); err != nil {
				return finish(env, g, r, "", nil, err)
			}
			cfg, err := o.Config(kopts.Namespace(), builderName(args))
			if err != nil {
				return finish(env, g, r, "", nil, err)
			}
			if g.Output == "yaml" {
				if !o.DryRun {
					return finish(env, g, r, "", nil, fail.New(fail.Usage, "add --dry-run", "-o yaml prints the builder's objects instead of writing them: it needs --dry-run"))
				}
				objs, err := kube.Objects(cfg)
				if err != nil {
					return finish(env, g, r, "", nil, err)
				}
				y, err := kube.YAML(objs)
				if err != nil {
					return finish(env, g, r, "", nil, fail.Wrap(fail.Internal, err, "", "cannot print the builder's objects"))
				}
				fmt.Fprintf(env.Stdout, "# BuildKit builder %s: `idopipe buildkit create --kubernetes` writes these objects\n"+
					"# (kubectl apply --server-side -f FILE does too); builds reach it with --buildkit-host %s.\n",
					kube.Address(cfg.Namespace, cfg.Name), kube.Address(cfg.Namespace, cfg.Name))
				_, err = env.Stdout.Write(y)
				return err
			}
			var b kube.Builder
			summary := ""
			err = pipeline.RunStage(c.Context(), "builder", func(ctx context.Context) (string, error) {
				kc, err := cluster.New(ctx, kopts.Flags)
				if err != nil {
					return "", err
				}
				if o.DryRun {
					plan, err := kube.DryRun(ctx, kc, cfg)
					if err != nil {
						return "", err
					}
					b = kube.Builder{Namespace: cfg.Namespace, Name: cfg.Name, Address: kube.Address(cfg.Namespace, cfg.Name), Replicas: cfg.Replicas}
					for _, ch := range plan {
						b.Applied = append(b.Applied, cluster.Applied{Ref: ch.Ref, Status: cluster.Status(string(ch.Action) + " (dry run)")})
						r.Report(report.Event{Kind: report.Info, Stage: "builder", Message: ch.Ref + ": " + string(ch.Action) + " (dry run)"})
					}
					summary = fmt.Sprintf("builder %s is valid (dry run; nothing written)", b.Address)
					return "dry run", nil
				}
				b, err = kube.Create(ctx, kc, cfg, kube.CreateOptions{Wait: o.Timeout, ForceConflicts: o.ForceConflicts, Announce: func(msg string) {
					r.Report(report.Event{Kind: report.Info, Stage: "builder", Message: msg})
				}})
				for _, a := range b.Applied {
					r.Report(report.Event{Kind: report.Info, Stage: "builder", Message: a.Ref + " " + string(a.Status)})
				}
				if err != nil {
					return "", err
				}
				switch {
				case len(b.Platforms) > 0:
					var parts []string
					for _, m := range b.Platforms {
						parts = append(parts, fmt.Sprintf("%s on %s %s (%d/%d replicas Ready)", m.Platform, m.Kind, m.Name, m.Ready, m.Replicas))
					}
					summary = fmt.Sprintf("builder %s, one builder per platform: %s; use --buildkit-host %s", b.Address, strings.Join(parts, ", "), b.Address)
				case o.Timeout == 0:
					summary = fmt.Sprintf("builder %s written (%s, %d replicas; not waited for): use --buildkit-host %s", b.Address, b.Kind, b.Replicas, b.Address)
				default:
					summary = fmt.Sprintf("builder %s ready: %s, %d/%d replicas (%s); use --buildkit-host %s", b.Address, b.Kind, b.Ready, b.Replicas, strings.Join(b.Pods, ", "), b.Address)
				}
				return fmt.Sprintf("%d/%d replicas ready", b.Ready, b.Replicas), nil
			}, r)
			return finish(env, g, r, summary, b, err)
		},
	}
	o.AddFlags(cmd.Flags())
	kopts.AddFlags(cmd.Flags())
	return cmd
}

// newBuildKitRmCommand deletes what create wrote.
func newBuildKitRmCommand(env Env, g *options.GlobalOptions) *cobra.Command {
	var kubernetes bool
	var timeout time.Duration
	kopts := builderKube()
	cmd := &cobra.Command{
		Use:   "rm --kubernetes [NAME]",
		Short: "Remove a builder that `idopipe buildkit create --kubernetes` made, and nothing else",
		Long: `rm deletes the builder's Deployment or StatefulSet and its ConfigMap (for a
builder made with --platform, those of each platform's builder), each only
if create wrote it (its labels say so), and waits until its Pods are gone.
The claims of a --storage builder (state-NAME-0, state-NAME-1, ...) hold its
cache and are kept, and listed: a later create of the same name and storage
class takes them back, cache and all. Free them with
` + "`kubectl -n NAMESPACE delete pvc -l app.kubernetes.io/instance=NAME`" + `.`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, args []string) error {
			r := plainReporter(env, g)
			if !kubernetes {
				return finish(env, g, r, "", nil, fail.New(fail.Usage, "pass --kubernetes (idopipe's own local buildkitd is `idopipe buildkit stop`)", "rm removes a builder in a Kubernetes cluster only"))
			}
			if err := kopts.Validate(); err != nil {
				return finish(env, g, r, "", nil, err)
			}
			if timeout < 0 {
				return finish(env, g, r, "", nil, fail.New(fail.Usage, "pass --timeout 0 or more, e.g. 2m", "--timeout %s is negative", timeout))
			}
			name := builderName(args)
			var res kube.Removed
			err := pipeline.RunStage(c.Context(), "builder", func(ctx context.Context) (string, error) {
				kc, err := cluster.New(ctx, kopts.Flags)
				if err != nil {
					return "", err
				}
				res, err = kube.Remove(ctx, kc, kopts.Namespace(), name, timeout)
				for _, d := range res.Deleted {
					r.Report(report.Event{Kind: report.Info, Stage: "builder", Message: d.Ref + " deleted"})
				}
				for _, k := range res.Kept {
					r.Report(report.Event{Kind: report.Info, Stage: "builder", Message: "kept " + k})
				}
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("%d objects deleted", len(res.Deleted)), nil
			}, r)
			return finish(env, g, r, fmt.Sprintf("builder %s removed (%d objects)", kube.Address(kopts.Namespace(), name), len(res.Deleted)), res, err)
		},
	}
	cmd.Flags().BoolVar(&kubernetes, "kubernetes", false, "remove a builder in the Kubernetes cluster of the kubeconfig")
	cmd.Flags().DurationVar(&timeout, "delete-timeout", 2*time.Minute, "how long to wait until what was deleted is gone (0: do not wait)")
	kopts.AddFlags(cmd.Flags())
	return cmd
}

// BuilderStatus is what `buildkit status --kubernetes` reports; for a
// builder made with --platform, each platform's builder in Platforms.
type BuilderStatus struct {
	Address  string   `json:"address"`
	Platform string   `json:"platform,omitempty"`
	Pods     []string `json:"pods"` // Ready replicas
	Version  string   `json:"version"`
	Workers  int      `json:"workers"`
	Connect  float64  `json:"connectSeconds"` // exec stream up and the first answer
	// WorkerPlatforms are the platforms its workers build, as `buildctl
	// debug workers` lists them: the worker's own first (a builder made
	// with --platform: that platform), then what its node can run.
	WorkerPlatforms []string        `json:"workerPlatforms,omitempty"`
	Platforms       []BuilderStatus `json:"platforms,omitempty"`
}

// builderStatus connects to builder name through the API server (as a
// build does) and asks BuildKit its version and workers; for a builder
// made with --platform, each platform's builder.
func builderStatus(ctx context.Context, env Env, g *options.GlobalOptions, k *options.KubeOptions, name string) error {
	if err := k.Validate(); err != nil {
		return finish(env, g, nil, "", nil, err)
	}
	st := BuilderStatus{Address: kube.Address(k.Namespace(), name)}
	err := func() error {
		cfg, err := k.Flags.ToRESTConfig()
		if err != nil {
			return fail.Wrap(fail.Cluster, err, "check --kubeconfig, $KUBECONFIG and --context", "cannot load the kubeconfig")
		}
		d, err := kube.NewDialer(cfg, k.Namespace(), name)
		if err != nil {
			return err
		}
		members, err := d.Members(ctx)
		if err != nil {
			return err
		}
		if len(members) == 0 {
			return askBuilder(ctx, d, &st)
		}
		for _, m := range members {
			ms := BuilderStatus{Address: m.String(), Platform: m.Platform}
			err := askBuilder(ctx, m, &ms)
			st.Platforms = append(st.Platforms, ms)
			if err != nil {
				return err
			}
			st.Pods = append(st.Pods, ms.Pods...)
		}
		return nil
	}()
	summary := fmt.Sprintf("builder %s: BuildKit %s answers through the API server (connected in %.2fs), %d worker(s); Ready replicas: %s",
		st.Address, st.Version, st.Connect, st.Workers, strings.Join(st.Pods, ", "))
	if len(st.Platforms) > 0 {
		var parts []string
		for _, m := range st.Platforms {
			own := ""
			if len(m.WorkerPlatforms) > 0 {
				own = m.WorkerPlatforms[0]
			}
			parts = append(parts, fmt.Sprintf("%s on %s: BuildKit %s (connected in %.2fs, worker platform %s), Ready replicas %s",
				m.Platform, m.Address, m.Version, m.Connect, own, strings.Join(m.Pods, ", ")))
		}
		summary = fmt.Sprintf("builder %s, one builder per platform: %s", st.Address, strings.Join(parts, "; "))
	}
	return finish(env, g, nil, summary, st, err)
}

// askBuilder fills st from builder d: its Ready replicas, and BuildKit's
// version and workers asked through the API server.
func askBuilder(ctx context.Context, d *kube.Dialer, st *BuilderStatus) error {
	var err error
	if st.Pods, err = d.Pods(ctx); err != nil {
		return err
	}
	start := time.Now()
	c, err := build.Connect(ctx, "", build.WithDialer(d))
	if err != nil {
		return err
	}
	defer c.Close()
	info, err := c.Info(ctx)
	if err != nil {
		return fail.Wrap(fail.Daemon, err, "", "builder %s: BuildKit did not answer", st.Address)
	}
	workers, err := c.ListWorkers(ctx)
	if err != nil {
		return fail.Wrap(fail.Daemon, err, "", "builder %s: BuildKit did not list its workers", st.Address)
	}
	st.Connect = time.Since(start).Seconds()
	st.Version, st.Workers = info.BuildkitVersion.Version, len(workers)
	for _, w := range workers {
		for _, p := range w.Platforms {
			plat := platformString(p.OS, p.Architecture, p.Variant)
			if n, err := kube.NormalizePlatform(plat); err == nil {
				plat = n
			}
			if !slices.Contains(st.WorkerPlatforms, plat) {
				st.WorkerPlatforms = append(st.WorkerPlatforms, plat)
			}
		}
	}
	return nil
}

func platformString(os, arch, variant string) string {
	if variant != "" {
		return os + "/" + arch + "/" + variant
	}
	return os + "/" + arch
}
