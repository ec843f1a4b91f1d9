// Command bench measures idopipe side by side with crane, skopeo, buildctl,
// kubectl and a bash release script on the local stack, and writes a
// Markdown table and a JSON file of the results. `make bench` runs it inside
// cmd/localstack, which puts the stack in its environment (BUILDKIT_HOST,
// KUBECONFIG, GITHUB_ACTOR, GITHUB_TOKEN, IDOPIPE_TEST_*); see
// build/bench/bench.sh.
//
// Every case runs several times; within a run the tools take turns, and the
// order rotates from run to run. Wall time is measured around the process;
// peak RSS is the ru_maxrss that wait4 reports for it (the largest resident
// set of the process or any descendant it waited for, as GNU time's %M).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

type config struct {
	Out        string
	Idopipe    string
	Peers      string // directory with crane and kubectl
	Tools      string // the stack's tools (buildctl, buildkitd, ...)
	Scripts    string // directory of the peer scripts
	Runs       int
	Repush     int
	BadRuns    int
	ImageMiB   int64
	Layers     int
	Only       string
	Budget     time.Duration
	Micro      bool
	MicroTime  string
	CmdTimeout time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.Out, "out", "build/bench/results", "directory for bench.md and bench.json")
	flag.StringVar(&c.Idopipe, "idopipe", "bin/idopipe", "idopipe binary")
	flag.StringVar(&c.Peers, "peers", "", "directory holding crane and kubectl (build/bench/tools.sh)")
	flag.StringVar(&c.Tools, "tools", os.Getenv("IDOPIPE_TOOLS_BIN"), "directory of the stack's tools (buildctl)")
	flag.StringVar(&c.Scripts, "scripts", "build/bench", "directory of peer-release.sh and peer-deploy.sh")
	flag.IntVar(&c.Runs, "runs", 5, "runs per case (each tool once per run)")
	flag.IntVar(&c.Repush, "repush", 3, "unchanged re-pushes after each push")
	flag.IntVar(&c.BadRuns, "bad-token-runs", 5, "runs of the bad-token case")
	flag.Int64Var(&c.ImageMiB, "image-mib", 1024, "size of the generated image in MiB")
	flag.IntVar(&c.Layers, "layers", 8, "layers of the generated image")
	flag.StringVar(&c.Only, "only", "", "comma-separated groups to run (build,push,verify,apply,release,kube,badtoken,sign,micro); default all")
	flag.BoolVar(&c.Micro, "micro", true, "run the Go microbenchmarks of pkg/manifest and pkg/report")
	flag.StringVar(&c.MicroTime, "benchtime", "1s", "-benchtime of the microbenchmarks")
	flag.DurationVar(&c.CmdTimeout, "timeout", 5*time.Minute, "limit for one measured command")
	flag.DurationVar(&c.Budget, "budget", 12*time.Minute, "start no further group after this much time (the results so far are written)")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// sample is one measured run.
type sample struct {
	Run     int                `json:"run"`
	Order   int                `json:"order"` // position among the tools in this run
	Seconds float64            `json:"seconds"`
	CPU     float64            `json:"cpuSeconds"` // user + system, the process and its waited-for descendants
	RSSKiB  int64              `json:"peakRssKiB"`
	Exit    int                `json:"exit"`
	OK      bool               `json:"ok"` // exit code as expected
	Stages  map[string]float64 `json:"stages,omitempty"`
}

// caseDef is one row group of the table.
type caseDef struct {
	ID    string
	Title string
	Note  string
	Tools []string // table order; idopipe first
	// Base names the idopipe variant a tool's ratio is taken against, where
	// it is not plain "idopipe".
	Base map[string]string
}

var cases = []caseDef{
	{ID: "build-cold", Title: "build planner fixture, cold (BuildKit cache pruned before each run)", Tools: []string{"idopipe", "buildctl"},
		Note: "`idopipe build` vs `buildctl build`, same buildkitd, same Dockerfile and named context, OCI layout output; client RSS only (the daemon does the work)"},
	{ID: "build-cached", Title: "build planner fixture, cached", Tools: []string{"idopipe", "buildctl"}},
	{ID: "build-noop-large", Title: "unchanged rebuild of a planner-sized image (a real Go binary of ~80 MB, 300 license files, final FROM scratch), SOURCE_DATE_EPOCH + rewrite-timestamp, into the layout that holds it",
		Tools: []string{"idopipe", "buildctl", "buildctl (no rewrite)"},
		Note:  "`idopipe build --source-date-epoch E` vs `buildctl build` with build-arg SOURCE_DATE_EPOCH and the exporter's rewrite-timestamp=true,source-date-epoch=E (the same digest settings), both warmed once; for reference buildctl without the rewrite (digests not reproducible)"},
	{ID: "push-1g", Title: "push generated image (~1 GiB, 8 layers) from an OCI layout to the TLS registry (GHCR's token flow), new repository", Tools: []string{"idopipe", "crane", "skopeo"},
		Note: "`idopipe push` vs `crane push` vs Debian's `skopeo copy oci:… docker://…` (skopeo's blob-info cache is removed before each run so it cannot mount blobs from an earlier repository)"},
	{ID: "repush", Title: "re-push of the unchanged image to the same tag", Tools: []string{"idopipe", "crane"}},
	{ID: "verify", Title: "pull-check of the 1 GiB image", Tools: []string{"idopipe", "crane pull", "crane digest", "idopipe (no --full)"},
		Base: map[string]string{"crane digest": "idopipe (no --full)"},
		Note: "`idopipe verify-pull --digest D --full` (every layer downloaded, size and sha256 checked; plain verify-pull when the build has no --full, see the notes) vs `crane pull --format oci` into a throwaway layout (every blob downloaded and written to disk); for reference `crane digest` (resolves the tag only) and idopipe without --full (manifest and config)"},
	{ID: "apply-first", Title: "deploy of the upstream IDO manifest + CRDs, first apply (fresh namespace, cluster-scoped objects and CRDs deleted before)", Tools: []string{"idopipe", "kubectl script", "kubectl apply"},
		Note: "`idopipe deploy` (validate, namespace, dry run, pull Secret, CRDs + Established, apply, wait for Pods) vs build/bench/peer-deploy.sh (the same steps with kubectl) vs one bare `kubectl apply --server-side -f crds -f manifest` into an existing namespace (no Secret, no waits)"},
	{ID: "apply-noop", Title: "deploy again, nothing to change", Tools: []string{"idopipe", "kubectl script", "kubectl apply"}},
	{ID: "apply-large", Title: "deploy of the IDO manifest plus 500 ConfigMaps, first apply", Tools: []string{"idopipe", "kubectl apply"},
		Note: "`idopipe deploy` (dry run of every object, then apply, then wait) vs one bare `kubectl apply --server-side` of the same file into an existing namespace"},
	{ID: "release-cold", Title: "whole release, cold: empty BuildKit cache, new repository, fresh namespace", Tools: []string{"idopipe", "script"},
		Note: "`idopipe release` vs build/bench/peer-release.sh (buildctl build, crane push, crane digest check, then peer-deploy.sh)"},
	{ID: "release-noop", Title: "whole release again, nothing to change", Tools: []string{"idopipe", "script"}},
	{ID: "bad-token", Title: "time to fail with a bad registry token (BuildKit cache warm)", Tools: []string{"idopipe", "script"},
		Note: "both must exit non-zero; idopipe with its credentials class (3)"},
}

type bench struct {
	cfg      config
	ctx      context.Context
	work     string
	logs     string
	env      map[string]string
	results  map[string]map[string][]sample
	notes    []string
	img      bigImage
	planner  string // REG/bench/planner:0.4.0@sha256:…
	pullRef  string // the 1 GiB image in the registry
	crane    string
	kubectl  string
	buildctl string
	versions [][2]string
	micro    []microResult
	started  time.Time
	groups   []string
	failures []string  // cases whose tool exited unexpectedly
	owner    string    // registry owner and namespace prefix, new for every run of the bench
	load     [2]string // /proc/loadavg before and after
}

func run(c config) error {
	b := &bench{cfg: c, ctx: context.Background(), results: map[string]map[string][]sample{}, started: time.Now()}
	b.owner = fmt.Sprintf("bench%x", b.started.UnixMilli()&0xffffff)
	for _, k := range []string{"BUILDKIT_HOST", "KUBECONFIG", "GITHUB_ACTOR", "GITHUB_TOKEN", "IDOPIPE_TEST_REGISTRY",
		"IDOPIPE_TEST_REGISTRY_CA", "IDOPIPE_TEST_SOURCE", "IDOPIPE_TEST_BUSYBOX", "IDOPIPE_TEST_FIXTURES"} {
		if os.Getenv(k) == "" {
			return fmt.Errorf("$%s is not set: run me inside cmd/localstack (make bench)", k)
		}
	}
	var err error
	if b.cfg.Idopipe, err = filepath.Abs(c.Idopipe); err != nil {
		return err
	}
	if b.cfg.Scripts, err = filepath.Abs(c.Scripts); err != nil {
		return err
	}
	b.crane = filepath.Join(c.Peers, "crane")
	b.kubectl = filepath.Join(c.Peers, "kubectl")
	b.buildctl = filepath.Join(c.Tools, "buildctl")
	for _, p := range []string{b.cfg.Idopipe, b.crane, b.kubectl, b.buildctl} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("missing tool: %w", err)
		}
	}
	if _, err := exec.LookPath("skopeo"); err != nil {
		return errors.New("skopeo not found: apt-get install skopeo (make bench does)")
	}
	// The stack's directory is removed when localstack stops; work beside
	// the fixture it made.
	b.work = filepath.Join(filepath.Dir(os.Getenv("IDOPIPE_TEST_SOURCE")), "bench")
	b.logs = filepath.Join(b.work, "logs")
	if err := os.MkdirAll(b.logs, 0o755); err != nil {
		return err
	}
	if err := b.setup(); err != nil {
		return err
	}
	b.collectVersions()
	b.load = [2]string{readTrim("/proc/loadavg"), ""}

	groups := []struct {
		name string
		fn   func() error
	}{
		{"build", b.groupBuild},
		{"push", b.groupPush},
		{"verify", b.groupVerify},
		{"apply", b.groupApply},
		{"release", b.groupRelease},
		{"kube", b.groupKube},
		{"badtoken", b.groupBadToken},
		{"sign", b.groupSign},
		{"micro", b.groupMicro},
	}
	for _, g := range groups {
		if !b.selected(g.name) {
			continue
		}
		if g.name == "micro" && !c.Micro {
			continue
		}
		if time.Since(b.started) > c.Budget {
			b.note(fmt.Sprintf("group %s skipped: the bench ran past its -budget of %s", g.name, c.Budget))
			continue
		}
		start := time.Now()
		b.logf("=== %s", g.name)
		if err := g.fn(); err != nil {
			b.note(fmt.Sprintf("group %s stopped early: %v", g.name, err))
			b.failures = append(b.failures, fmt.Sprintf("group %s stopped early: %v", g.name, err))
			b.logf("group %s: %v", g.name, err)
		}
		b.groups = append(b.groups, g.name)
		b.logf("=== %s done in %.0fs", g.name, time.Since(start).Seconds())
	}
	b.load[1] = readTrim("/proc/loadavg")
	if err := b.write(); err != nil {
		return err
	}
	if len(b.failures) > 0 {
		return fmt.Errorf("%d failures (runs that exited unexpectedly are not in the table):\n  %s", len(b.failures), strings.Join(b.failures, "\n  "))
	}
	return nil
}

func (b *bench) selected(g string) bool {
	if b.cfg.Only == "" {
		return true
	}
	for _, s := range strings.Split(b.cfg.Only, ",") {
		if strings.TrimSpace(s) == g {
			return true
		}
	}
	return false
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%5.0fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) note(s string) { b.notes = append(b.notes, s) }

// setup writes the credentials files for the peers and generates the image.
func (b *bench) setup() error {
	reg := os.Getenv("IDOPIPE_TEST_REGISTRY")
	b.env = map[string]string{
		"REGISTRY": reg,
		"CA":       os.Getenv("IDOPIPE_TEST_REGISTRY_CA"),
		"SRC":      os.Getenv("IDOPIPE_TEST_SOURCE"),
		"BUSYBOX":  os.Getenv("IDOPIPE_TEST_BUSYBOX"),
		"MANIFEST": filepath.Join(os.Getenv("IDOPIPE_TEST_FIXTURES"), "manifest-0.4.0.yaml"),
		"CRDS":     filepath.Join(os.Getenv("IDOPIPE_TEST_FIXTURES"), "intents_crds_v1alpha1.yaml"),
	}
	// crane and the release script read the token from a docker
	// config.json (DOCKER_CONFIG), skopeo from the same file (--authfile),
	// kubectl makes the pull Secret from it (--from-file): never argv.
	for name, token := range map[string]string{"docker": os.Getenv("GITHUB_TOKEN"), "docker-bad": "ghp_benchWrongToken0000000000000000"} {
		dir := filepath.Join(b.work, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		auth := base64.StdEncoding.EncodeToString([]byte(os.Getenv("GITHUB_ACTOR") + ":" + token))
		cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{reg: map[string]string{"auth": auth}}})
		if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o600); err != nil {
			return err
		}
	}
	// skopeo's --dest-cert-dir wants the CA as *.crt.
	ca, err := os.ReadFile(b.env["CA"])
	if err != nil {
		return err
	}
	certs := filepath.Join(b.work, "certs")
	if err := os.MkdirAll(certs, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(certs, "ca.crt"), ca, 0o644); err != nil {
		return err
	}
	if b.selected("push") || b.selected("verify") {
		start := time.Now()
		b.img, err = generateImage(filepath.Join(b.work, "big"), b.cfg.ImageMiB<<20, b.cfg.Layers)
		if err != nil {
			return fmt.Errorf("generate image: %w", err)
		}
		b.logf("generated %d MiB image, %d layers, %s in %.1fs", b.img.Bytes>>20, b.img.Layers, b.img.Digest, time.Since(start).Seconds())
	}
	return nil
}

// peerEnv is the environment of crane, kubectl and the scripts.
func (b *bench) peerEnv(extra ...string) []string {
	return append([]string{
		"DOCKER_CONFIG=" + filepath.Join(b.work, "docker"),
		"SSL_CERT_FILE=" + b.env["CA"],
		"KUBECACHEDIR=" + filepath.Join(b.work, "kubecache"),
		"BUILDCTL=" + b.buildctl, "CRANE=" + b.crane, "KUBECTL=" + b.kubectl,
		"SRC=" + b.env["SRC"], "BUSYBOX=" + b.env["BUSYBOX"], "REGISTRY=" + b.env["REGISTRY"],
		"MANIFEST=" + b.env["MANIFEST"], "CRDS=" + b.env["CRDS"],
	}, extra...)
}

// cmd is one command to measure or to run untimed.
type cmd struct {
	argv     []string
	env      []string // added to the process environment
	wantFail bool
	json     bool          // idopipe -o json: read the stage times from the result
	timeout  time.Duration // 0: -timeout
}

// exec runs c, writing its output to the log named label, and returns the
// measurement.
func (b *bench) exec(label string, c cmd) (sample, error) {
	timeout := c.timeout
	if timeout == 0 {
		timeout = b.cfg.CmdTimeout
	}
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	logPath := filepath.Join(b.logs, safe(label)+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return sample{}, err
	}
	defer lf.Close()
	fmt.Fprintf(lf, "\n### %s\n", strings.Join(c.argv, " "))
	var stdout bytes.Buffer
	x := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	x.Env = append(os.Environ(), c.env...)
	x.Stdout = io.MultiWriter(lf, &stdout)
	x.Stderr = lf
	start := time.Now()
	err = x.Run()
	d := time.Since(start)
	s := sample{Seconds: d.Seconds(), Exit: -1}
	if x.ProcessState != nil {
		s.Exit = x.ProcessState.ExitCode()
		if ru, ok := x.ProcessState.SysUsage().(*syscall.Rusage); ok {
			s.RSSKiB = ru.Maxrss
		}
		s.CPU = (x.ProcessState.UserTime() + x.ProcessState.SystemTime()).Seconds()
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return s, err
	}
	if ctx.Err() != nil {
		s.Exit = -1
	}
	s.OK = (s.Exit == 0) != c.wantFail && s.Exit != -1
	if c.json {
		s.Stages = stagesFrom(stdout.Bytes())
	}
	if !s.OK {
		fmt.Fprintf(os.Stderr, "  %s: unexpected exit %d; last lines of %s:\n%s", label, s.Exit, logPath, tail(logPath, 8))
	}
	return s, nil
}

// untimed runs a preparation step; a failure is an error.
func (b *bench) untimed(label string, argv []string, env ...string) error {
	var s sample
	var err error
	for try := 0; try < 2; try++ {
		s, err = b.exec("prep-"+label, cmd{argv: argv, env: env, timeout: 2 * time.Minute})
		if err != nil {
			return err
		}
		if s.Seconds > 5 {
			b.logf("  (preparation %s took %.1fs)", label, s.Seconds)
		}
		if s.OK {
			return nil
		}
	}
	return fmt.Errorf("%s failed (exit %d), see %s", label, s.Exit, filepath.Join(b.logs, "prep-"+safe(label)+".log"))
}

// measure runs c as run/order of tool in case id and records it.
func (b *bench) measure(id, tool string, run, order int, c cmd) sample {
	s, err := b.exec(id+"-"+tool, c)
	if err != nil {
		b.logf("  %s %s: %v", id, tool, err)
		s.OK = false
	}
	s.Run, s.Order = run, order
	if b.results[id] == nil {
		b.results[id] = map[string][]sample{}
	}
	status := ""
	if s.OK {
		b.results[id][tool] = append(b.results[id][tool], s)
	} else {
		// A tool that exits unexpectedly measured nothing: it stays out of
		// the table and fails the bench.
		status = fmt.Sprintf(" UNEXPECTED exit %d", s.Exit)
		b.failures = append(b.failures, fmt.Sprintf("%s %s run %d: exit %d (log %s)", id, tool, run+1, s.Exit,
			filepath.Join(b.logs, safe(id+"-"+tool)+".log")))
	}
	b.logf("  %-12s %-15s run %d: %7.3fs %6.1f MiB%s", id, tool, run+1, s.Seconds, float64(s.RSSKiB)/1024, status)
	return s
}

// rotate returns tools in the order of run r.
func rotate(tools []string, r int) []string {
	n := len(tools)
	out := make([]string, n)
	for i := range tools {
		out[i] = tools[(i+r)%n]
	}
	return out
}

func (b *bench) idopipe(args ...string) []string {
	return append([]string{b.cfg.Idopipe, "-o", "json"}, args...)
}

// --- groups -------------------------------------------------------------

func (b *bench) groupBuild() error {
	base, err := layoutDigest(b.env["BUSYBOX"])
	if err != nil {
		return err
	}
	var last string
	for r := 0; r < b.cfg.Runs; r++ {
		for i, tool := range rotate([]string{"idopipe", "buildctl"}, r) {
			if err := b.untimed("prune", []string{b.buildctl, "prune", "--all"}); err != nil {
				return err
			}
			for _, id := range []string{"build-cold", "build-cached"} {
				out := filepath.Join(b.work, "build", fmt.Sprintf("%s-%d-%s", tool, r, id))
				var c cmd
				if tool == "idopipe" {
					c = cmd{json: true, argv: b.idopipe("build", "--source", b.env["SRC"],
						"--build-context", "golang:1.24.6=oci-layout://"+b.env["BUSYBOX"],
						"--oci-layout", out, "--progress", "plain")}
				} else {
					c = cmd{argv: []string{b.buildctl, "build", "--frontend", "dockerfile.v0", "--progress", "plain",
						"--local", "context=" + b.env["SRC"], "--local", "dockerfile=" + b.env["SRC"],
						"--oci-layout", "busybox=" + b.env["BUSYBOX"], "--opt", "context:golang:1.24.6=oci-layout://busybox@" + base,
						"--output", "type=oci,dest=" + out + ",tar=false,name=planner:0.4.0"}}
				}
				if s := b.measure(id, tool, r, i, c); s.OK && tool == "idopipe" {
					last = out
				}
			}
		}
	}
	if last == "" {
		return errors.New("no idopipe build succeeded")
	}
	if err := b.buildNoopLarge(base); err != nil {
		b.note("build-noop-large: " + err.Error())
	}
	if err := b.pushPlanner(last); err != nil {
		return err
	}
	return os.RemoveAll(filepath.Join(b.work, "build"))
}

// pushPlanner pushes the planner image in layout (untimed, with crane) as
// the image the apply group deploys.
func (b *bench) pushPlanner(layout string) error {
	ref := b.env["REGISTRY"] + "/" + b.owner + "/planner:0.4.0"
	out, err := b.output("crane-push-planner", cmd{argv: []string{b.crane, "push", layout, ref}, env: b.peerEnv()})
	if err != nil {
		return err
	}
	b.planner = strings.TrimSpace(out)
	if i := strings.LastIndex(b.planner, "@"); i >= 0 {
		b.planner = ref + b.planner[i:]
	}
	return nil
}

// ensurePlanner makes the planner image the apply group deploys when the
// build group did not run (-only apply): one untimed idopipe build and a
// crane push.
func (b *bench) ensurePlanner() error {
	if b.planner != "" {
		return nil
	}
	out := filepath.Join(b.work, "apply-planner")
	if err := b.untimed("build-planner", b.idopipe("build", "--source", b.env["SRC"],
		"--build-context", "golang:1.24.6=oci-layout://"+b.env["BUSYBOX"], "--oci-layout", out, "--progress", "quiet")); err != nil {
		return err
	}
	return b.pushPlanner(out)
}

// buildNoopLarge measures an unchanged rebuild of a planner-sized image:
// BuildKit's rewrite-timestamp recompresses every layer the build made on
// every export, which idopipe skips when the layout holds the image.
func (b *bench) buildNoopLarge(base string) error {
	src := filepath.Join(b.work, "large")
	if err := os.RemoveAll(src); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(src, "licenses"), 0o755); err != nil {
		return err
	}
	// The planner is a stripped static Go binary of ~80 MB; idopipe's own
	// main built the same way is one of that size.
	// (Not b.untimed: a cold Go build cache takes minutes on 2 cores.)
	if _, err := b.output("large-binary", cmd{argv: []string{"go", "build", "-ldflags", "-s -w", "-o", filepath.Join(src, "planner"), "./cmd/idopipe"}}); err != nil {
		return err
	}
	n, err := copyLicenses(filepath.Join(src, "licenses"), 300)
	if err != nil {
		return err
	}
	const df = `FROM golang:1.24.6 AS build
WORKDIR /app
COPY planner /app/bin/planner
COPY licenses /app/licenses
RUN chmod 0755 /app/bin/planner

FROM scratch
COPY --from=build /app/bin/planner /app/bin/planner
COPY --from=build /app/licenses /licenses
USER nonroot:nonroot
EXPOSE 33333
ENTRYPOINT ["/app/bin/planner"]
`
	if err := os.WriteFile(filepath.Join(src, "Dockerfile"), []byte(df), 0o644); err != nil {
		return err
	}
	if fi, err := os.Stat(filepath.Join(src, "planner")); err == nil {
		b.note(fmt.Sprintf("build-noop-large: binary %.1f MB, %d license files", float64(fi.Size())/1e6, n))
	}
	const epoch = "1700000000"
	argv := func(tool, out string) []string {
		if tool == "idopipe" {
			return b.idopipe("build", "--source", src, "--source-date-epoch", epoch,
				"--build-context", "golang:1.24.6=oci-layout://"+b.env["BUSYBOX"], "--oci-layout", out, "--progress", "plain")
		}
		exp := "type=oci,dest=" + out + ",tar=false,name=planner:0.4.0"
		if tool == "buildctl" {
			exp += ",rewrite-timestamp=true,source-date-epoch=" + epoch
		}
		return []string{b.buildctl, "build", "--frontend", "dockerfile.v0", "--progress", "plain",
			"--local", "context=" + src, "--local", "dockerfile=" + src,
			"--oci-layout", "golang=" + b.env["BUSYBOX"], "--opt", "context:golang:1.24.6=oci-layout://golang@" + base,
			"--opt", "build-arg:SOURCE_DATE_EPOCH=" + epoch, "--output", exp}
	}
	tools := []string{"idopipe", "buildctl", "buildctl (no rewrite)"}
	for _, tool := range tools {
		out := filepath.Join(b.work, "large-out", safe(tool))
		if err := b.untimed("large-warm-"+safe(tool), argv(tool, out)); err != nil {
			return err
		}
	}
	for r := 0; r < b.cfg.Runs; r++ {
		for i, tool := range rotate(tools, r) {
			out := filepath.Join(b.work, "large-out", safe(tool))
			b.measure("build-noop-large", tool, r, i, cmd{json: tool == "idopipe", argv: argv(tool, out)})
		}
	}
	return os.RemoveAll(filepath.Join(b.work, "large-out"))
}

// copyLicenses copies up to n license files (LICENSE*, COPYING*, NOTICE*)
// of the Go module cache into dir, one directory each, as the planner's
// image collects its modules' licenses.
func copyLicenses(dir string, n int) (int, error) {
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return 0, err
	}
	root := strings.TrimSpace(string(out))
	count := 0
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		switch {
		case count >= n:
			return filepath.SkipAll
		case err != nil:
			return nil //nolint:nilerr // an unreadable directory is left out
		case d.IsDir() && p == filepath.Join(root, "cache"):
			return filepath.SkipDir
		case d.IsDir() || !d.Type().IsRegular():
			return nil
		}
		name := strings.ToUpper(d.Name())
		if !strings.HasPrefix(name, "LICENSE") && !strings.HasPrefix(name, "COPYING") && !strings.HasPrefix(name, "NOTICE") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil //nolint:nilerr // an unreadable file is left out
		}
		count++
		to := filepath.Join(dir, fmt.Sprintf("m%03d", count))
		if err := os.MkdirAll(to, 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, d.Name()), data, 0o644)
	})
	if count == 0 && err == nil {
		err = errors.New("no license files in the module cache")
	}
	return count, err
}

// output runs c untimed and returns its stdout.
func (b *bench) output(label string, c cmd) (string, error) {
	x := exec.CommandContext(b.ctx, c.argv[0], c.argv[1:]...)
	x.Env = append(os.Environ(), c.env...)
	var errb bytes.Buffer
	x.Stderr = &errb
	out, err := x.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %v: %s", label, err, strings.TrimSpace(errb.String()))
	}
	return string(out), nil
}

func (b *bench) groupPush() error {
	reg := b.env["REGISTRY"]
	for r := 0; r < b.cfg.Runs; r++ {
		for i, tool := range rotate([]string{"idopipe", "crane", "skopeo"}, r) {
			name := fmt.Sprintf("push-%s-%d", tool, r)
			ref := reg + "/" + b.owner + "/" + name + ":1"
			var c cmd
			switch tool {
			case "idopipe":
				c = cmd{json: true, argv: b.idopipe("push", "--oci-layout", b.img.Dir, "--digest", b.img.Digest,
					"--registry", reg, "--registry-ca", b.env["CA"], "--owner", b.owner, "--image-name", name, "--version", "1")}
			case "crane":
				c = cmd{argv: []string{b.crane, "push", b.img.Dir, ref}, env: b.peerEnv()}
			case "skopeo":
				for _, f := range []string{"blob-info-cache-v1.boltdb", "blob-info-cache-v1.sqlite"} {
					_ = os.Remove(filepath.Join("/var/lib/containers/cache", f))
				}
				c = cmd{argv: []string{"skopeo", "copy", "--authfile", filepath.Join(b.work, "docker", "config.json"),
					"--dest-cert-dir", filepath.Join(b.work, "certs"), "oci:" + b.img.Dir, "docker://" + ref}}
			}
			_ = b.untimed("sync", []string{"sync"})
			s := b.measure("push-1g", tool, r, i, c)
			if s.OK && b.pullRef == "" && tool != "skopeo" {
				b.pullRef = ref
			}
			if s.OK {
				if d, err := b.output("digest", cmd{argv: []string{b.crane, "digest", ref}, env: b.peerEnv()}); err != nil || strings.TrimSpace(d) != b.img.Digest {
					b.note(fmt.Sprintf("%s pushed %s, which the registry resolves to %q, not %s", tool, ref, strings.TrimSpace(d), b.img.Digest))
				}
			}
			if tool == "skopeo" || !s.OK {
				continue
			}
			for k := 0; k < b.cfg.Repush; k++ {
				b.measure("repush", tool, r*b.cfg.Repush+k, i, c)
			}
		}
	}
	return nil
}

func (b *bench) groupVerify() error {
	ref := b.pullRef
	if ref == "" {
		ref = b.env["REGISTRY"] + "/" + b.owner + "/big:1"
		if err := b.untimed("push-big", []string{b.crane, "push", b.img.Dir, ref}, b.peerEnv()...); err != nil {
			return err
		}
	}
	tools := []string{"idopipe", "crane pull", "crane digest"}
	full := b.hasFlag("verify-pull", "--full")
	if full {
		tools = append(tools, "idopipe (no --full)")
	} else {
		b.note("`idopipe verify-pull` has no --full: the verify case measures plain verify-pull (manifest and config only) against a full crane pull")
	}
	for r := 0; r < b.cfg.Runs; r++ {
		for i, tool := range rotate(tools, r) {
			dir := filepath.Join(b.work, "pulled")
			var c cmd
			switch tool {
			case "idopipe":
				args := []string{"verify-pull", "--registry-ca", b.env["CA"], ref, "--digest", b.img.Digest}
				if full {
					args = append(args, "--full")
				}
				c = cmd{json: true, argv: b.idopipe(args...)}
			case "idopipe (no --full)":
				c = cmd{json: true, argv: b.idopipe("verify-pull", "--registry-ca", b.env["CA"], ref, "--digest", b.img.Digest)}
			case "crane pull":
				c = cmd{argv: []string{b.crane, "pull", "--format", "oci", ref, dir}, env: b.peerEnv()}
			case "crane digest":
				c = cmd{argv: []string{b.crane, "digest", ref}, env: b.peerEnv()}
			}
			b.measure("verify", tool, r, i, c)
			_ = os.RemoveAll(dir)
		}
	}
	return nil
}

// checkPods makes sure that a deploy that said it was done left both IDO
// Pods Ready in ns; a note records any that did not.
func (b *bench) checkPods(id, tool, ns string) {
	out, err := b.output("check-pods", cmd{env: b.peerEnv(), argv: []string{b.kubectl, "get", "pods", "-n", ns,
		"-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{" "}{end}`}})
	got := strings.Fields(out)
	slices.Sort(got)
	if want := []string{"planner-mongodb=True", "planner=True"}; err != nil || !slices.Equal(got, want) {
		b.note(fmt.Sprintf("%s %s: namespace %s holds Pods %v after the run, want %v (%v)", id, tool, ns, got, want, err))
	}
}

// hasFlag tells whether idopipe's command takes flag (older builds lack some).
func (b *bench) hasFlag(command, flag string) bool {
	out, _ := exec.Command(b.cfg.Idopipe, command, "--help").CombinedOutput()
	return bytes.Contains(out, []byte(flag+" "))
}

// resetCluster removes the cluster-scoped objects of the IDO manifest and
// its CRDs, so that the next apply is a first one and no other field
// manager owns them.
func (b *bench) resetCluster() error {
	return b.untimed("reset-cluster", []string{b.kubectl, "delete", "--ignore-not-found", "--wait",
		"clusterrolebinding/planner-role-binding", "clusterrole/planner-role",
		"crd/intents.ido.intel.com", "crd/kpiprofiles.ido.intel.com"}, b.peerEnv()...)
}

// dropNamespace deletes ns and waits until it is gone (untimed): the
// stack's real node has 2 CPUs and one release's Pods request 1.5, so the
// next run's Pods fit only once this one's are gone.
func (b *bench) dropNamespace(ns string) {
	if err := b.untimed("drop-ns", []string{b.kubectl, "delete", "namespace", ns, "--ignore-not-found", "--wait", "--grace-period=1", "--timeout=2m"}, b.peerEnv()...); err != nil {
		b.note(fmt.Sprintf("namespace %s: %v", ns, err))
	}
}

func (b *bench) groupApply() error {
	if err := b.ensurePlanner(); err != nil {
		return err
	}
	manifest, err := os.ReadFile(b.env["MANIFEST"])
	if err != nil {
		return err
	}
	for r := 0; r < b.cfg.Runs; r++ {
		for i, tool := range rotate([]string{"idopipe", "kubectl script", "kubectl apply"}, r) {
			if err := b.resetCluster(); err != nil {
				return err
			}
			ns := fmt.Sprintf("%s-apply-%s-%d", b.owner, strings.ReplaceAll(tool, " ", "-"), r)
			var c cmd
			switch tool {
			case "idopipe":
				c = cmd{json: true, argv: b.idopipe("deploy", "--image", b.planner, "--manifest", b.env["MANIFEST"],
					"--crds", b.env["CRDS"], "-n", ns, "--timeout", "2m")}
			case "kubectl script":
				c = cmd{argv: []string{"bash", filepath.Join(b.cfg.Scripts, "peer-deploy.sh")}, env: b.peerEnv("NS="+ns, "IMAGE="+b.planner)}
			case "kubectl apply":
				if err := b.untimed("create-ns", []string{b.kubectl, "create", "namespace", ns}, b.peerEnv()...); err != nil {
					return err
				}
				f := filepath.Join(b.work, ns+".yaml")
				if err := os.WriteFile(f, rewriteManifest(manifest, ns, b.planner, "ghcr-secret"), 0o644); err != nil {
					return err
				}
				c = cmd{argv: []string{b.kubectl, "apply", "--server-side", "-n", ns, "-f", b.env["CRDS"], "-f", f}, env: b.peerEnv()}
			}
			b.measure("apply-first", tool, r, i, c)
			if tool != "kubectl apply" {
				b.checkPods("apply-first", tool, ns)
			}
			b.measure("apply-noop", tool, r, i, c)
			b.dropNamespace(ns)
		}
	}
	if err := b.applyLarge(manifest); err != nil {
		return err
	}
	return b.resetCluster()
}

// applyLarge deploys the manifest with 500 more ConfigMaps: the cost per
// object, where the planner's nine objects show only fixed costs.
func (b *bench) applyLarge(manifest []byte) error {
	var filler bytes.Buffer
	for i := range 500 {
		fmt.Fprintf(&filler, "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: filler-%03d}\ndata: {i: \"%d\"}\n", i, i)
	}
	for r := 0; r < b.cfg.Runs; r++ {
		for i, tool := range rotate([]string{"idopipe", "kubectl apply"}, r) {
			if err := b.resetCluster(); err != nil {
				return err
			}
			ns := fmt.Sprintf("%s-large-%s-%d", b.owner, strings.ReplaceAll(tool, " ", "-"), r)
			f := filepath.Join(b.work, ns+".yaml")
			var c cmd
			switch tool {
			case "idopipe":
				if err := os.WriteFile(f, append(append([]byte{}, manifest...), filler.Bytes()...), 0o644); err != nil {
					return err
				}
				c = cmd{json: true, argv: b.idopipe("deploy", "--image", b.planner, "--manifest", f,
					"--crds", b.env["CRDS"], "-n", ns, "--timeout", "2m")}
			case "kubectl apply":
				if err := b.untimed("create-ns", []string{b.kubectl, "create", "namespace", ns}, b.peerEnv()...); err != nil {
					return err
				}
				m := append(rewriteManifest(manifest, ns, b.planner, "ghcr-secret"), filler.Bytes()...)
				if err := os.WriteFile(f, m, 0o644); err != nil {
					return err
				}
				c = cmd{argv: []string{b.kubectl, "apply", "--server-side", "-n", ns, "-f", b.env["CRDS"], "-f", f}, env: b.peerEnv()}
			}
			b.measure("apply-large", tool, r, i, c)
			b.dropNamespace(ns)
		}
	}
	return nil
}

// rewriteManifest does to the upstream manifest what peer-deploy.sh's sed
// does: namespace, planner image, imagePullSecrets on its ServiceAccount.
func rewriteManifest(m []byte, ns, image, secret string) []byte {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(m))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasSuffix(line, "namespace: ido") {
			line = strings.TrimSuffix(line, "ido") + ns
		}
		line = strings.Replace(line, "image: 127.0.0.1:5000/planner:0.4.0", "image: "+image, 1)
		out.WriteString(line + "\n")
		if line == "  name: planner-service-account" {
			out.WriteString("imagePullSecrets:\n- name: " + secret + "\n")
		}
	}
	return out.Bytes()
}

func (b *bench) releaseCmd(tool, owner, ns string, bad bool) cmd {
	if tool == "idopipe" {
		c := cmd{json: true, wantFail: bad, argv: b.idopipe("release", "--source", b.env["SRC"],
			"--build-context", "golang:1.24.6=oci-layout://"+b.env["BUSYBOX"],
			"--registry", b.env["REGISTRY"], "--registry-ca", b.env["CA"], "--owner", owner,
			"--manifest", b.env["MANIFEST"], "--crds", b.env["CRDS"], "-n", ns, "--progress", "plain", "--timeout", "2m")}
		if bad {
			c.env = []string{"GITHUB_TOKEN=ghp_benchWrongToken0000000000000000"}
		}
		return c
	}
	env := b.peerEnv("OWNER="+owner, "NS="+ns)
	if bad {
		env = append(env, "DOCKER_CONFIG="+filepath.Join(b.work, "docker-bad"))
	}
	return cmd{wantFail: bad, argv: []string{"bash", filepath.Join(b.cfg.Scripts, "peer-release.sh")}, env: env}
}

func (b *bench) groupRelease() error {
	for r := 0; r < b.cfg.Runs; r++ {
		for i, tool := range rotate([]string{"idopipe", "script"}, r) {
			if err := b.untimed("prune", []string{b.buildctl, "prune", "--all"}); err != nil {
				return err
			}
			if err := b.resetCluster(); err != nil {
				return err
			}
			name := fmt.Sprintf("%s-rel-%s-%d", b.owner, tool, r)
			c := b.releaseCmd(tool, name, name, false)
			b.measure("release-cold", tool, r, i, c)
			b.checkPods("release-cold", tool, name)
			b.measure("release-noop", tool, r, i, c)
			b.dropNamespace(name)
		}
	}
	return b.resetCluster()
}

func (b *bench) groupBadToken() error {
	// Warm the build cache, as a user rerunning with a fixed token would.
	warm := b.releaseCmd("script", b.owner+"-warm", b.owner+"-warm", true)
	_, _ = b.exec("prep-warm", warm)
	b.dropNamespace(b.owner + "-warm")
	for r := 0; r < b.cfg.BadRuns; r++ {
		for i, tool := range rotate([]string{"idopipe", "script"}, r) {
			name := fmt.Sprintf("%s-bad-%s-%d", b.owner, tool, r)
			s := b.measure("bad-token", tool, r, i, b.releaseCmd(tool, name, name, true))
			if tool == "idopipe" && s.Exit != 3 && s.Exit != -1 {
				b.note(fmt.Sprintf("idopipe release with a bad token exited %d, not 3 (credentials)", s.Exit))
			}
		}
	}
	return nil
}

// stagesFrom reads the per-stage seconds from idopipe's -o json result.
func stagesFrom(out []byte) map[string]float64 {
	var stages map[string]float64
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var r struct {
			Kind   string `json:"kind"`
			Result struct {
				Stages map[string]float64 `json:"stages"`
			} `json:"result"`
			Stage   string  `json:"stage"`
			Seconds float64 `json:"seconds"`
		}
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			continue
		}
		switch r.Kind {
		case "result":
			if len(r.Result.Stages) > 0 {
				stages = r.Result.Stages
			}
		case "stage-done", "stage-fail":
			if stages == nil {
				stages = map[string]float64{}
			}
			if _, ok := stages[r.Stage]; !ok {
				stages[r.Stage] = r.Seconds
			}
		}
	}
	return stages
}

func (b *bench) collectVersions() {
	first := func(argv ...string) string {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil && len(out) == 0 {
			return "unknown (" + err.Error() + ")"
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		if strings.Contains(argv[0], "/") { // some tools print their own path first
			line = strings.TrimPrefix(line, argv[0])
		}
		return strings.TrimSpace(line)
	}
	b.versions = [][2]string{
		{"idopipe", first(b.cfg.Idopipe, "version")},
		{"crane", first(b.crane, "version")},
		{"skopeo", first("skopeo", "--version")},
		{"buildctl", first(b.buildctl, "--version")},
		{"buildkitd", first(filepath.Join(b.cfg.Tools, "buildkitd"), "--version")},
		{"kubectl", first(b.kubectl, "version", "--client")},
		{"kube-apiserver", first(filepath.Join(b.cfg.Tools, "kube-apiserver"), "--version")},
		{"registry", first(filepath.Join(b.cfg.Tools, "registry"), "--version")},
		{"go", runtime.Version()},
		{"kernel", readTrim("/proc/sys/kernel/osrelease")},
	}
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func safe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '/' {
			return '_'
		}
		return r
	}, s)
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ") + "\n"
}
