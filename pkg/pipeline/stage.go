package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/report"
)

// table is THE list of stages: their names, their order, what each does
// and when it runs. Release, Deploy, --from/--to/--skip, the release
// command's help and the GitHub job summary all read it.
var table = []stageDef{
	{name: "validate", selectable: true, body: (*release).validate,
		help: "read and check every input: image names, build inputs, manifests, CRDs (always runs)",
		runs: func(scope) bool { return true }},
	{name: "revision", body: (*release).readRevision,
		help: "for a rollback: the revision's record from the namespace's history (objects, images by digest) in place of the manifests, its images still in the registry",
		runs: func(s scope) bool { return s.rollback }},
	{name: "build", selectable: true, body: (*release).build,
		help: "build every image with BuildKit into its OCI layout",
		runs: func(s scope) bool { return s.pushes() && s.has("build") }},
	{name: "checks", during: "build", body: (*release).checks,
		help: "ask the registry and the cluster, changing nothing: the token may push, every kind is served, the namespace and pull Secret are usable (alongside the build when there is one)",
		runs: func(scope) bool { return true }},
	{name: "resolve", body: (*release).resolve,
		help: "when nothing is built: the digest the registry has under the tag, for the later stages",
		runs: func(s scope) bool { return s.pushes() && !s.has("build") && len(s.selected) > 1 }},
	{name: "push", selectable: true, body: (*release).push,
		help: "push every image (and sign it with --sign); an image the registry has already is not pushed again",
		runs: func(s scope) bool { return s.pushes() && s.has("push") }},
	{name: "verify-pull", selectable: true, body: (*release).verify,
		help: "pull every image back by its tag: the digest, its blobs, the signature with --verify-key",
		runs: func(s scope) bool { return s.pushes() && s.has("verify-pull") }},
	{name: "plan", body: (*release).dryRun,
		help: "with --dry-run: the server-side dry run of every object and its diff; nothing is built, pushed or written",
		runs: func(s scope) bool { return s.dryRun }},
	{name: "secret", selectable: true, body: (*release).secret,
		help: "the namespace and the release lock, the CRDs Established, the server-side dry run of every object, then the pull Secret",
		runs: func(s scope) bool { return !s.dryRun && s.has("secret") }},
	{name: "apply", selectable: true, body: (*release).apply,
		help: "carry out the plan: create, update, recreate changed Pods, prune what the manifest dropped",
		runs: func(s scope) bool { return !s.dryRun && s.has("apply") }},
	{name: "wait", selectable: true, body: (*release).wait,
		help: "wait until every object is current (Pods Ready); a failure is diagnosed",
		runs: func(s scope) bool { return !s.dryRun && s.has("wait") }},
}

// stageDef is one row of the table.
type stageDef struct {
	name       string
	selectable bool // --from, --to and --skip name it
	help       string
	// during names the stage this one runs alongside when both run.
	during string
	runs   func(scope) bool
	body   func(*release, context.Context) (string, error)
}

// scope is what a run is: the stages the user selected, and its mode.
type scope struct {
	selected []string // selectable stages, validate included
	dryRun   bool
	deploy   bool // the image is pushed already: nothing is built or pushed
	rollback bool // the objects and images come from a revision's record
}

func (s scope) has(n string) bool { return slices.Contains(s.selected, n) }

// pushes: the run may build and push.
func (s scope) pushes() bool { return !s.dryRun && !s.deploy }

// cluster: the run asks the cluster (a dry run always does).
func (s scope) cluster() bool {
	return s.dryRun || s.has("secret") || s.has("apply") || s.has("wait")
}

// stagesOf are the stages of the table that run in s, bound to rel.
func stagesOf(s scope, rel *release) []Stage {
	var out []Stage
	runs := map[string]bool{}
	for _, d := range table {
		if d.runs(s) {
			runs[d.name] = true
			out = append(out, Stage{Name: d.name, Run: func(ctx context.Context) (string, error) { return d.body(rel, ctx) }})
		}
	}
	for i, st := range out {
		if d := table[slices.IndexFunc(table, func(d stageDef) bool { return d.name == st.Name })]; runs[d.during] {
			out[i].During = d.during
		}
	}
	return out
}

// StageNames are the stages --from, --to and --skip name, in order.
var StageNames = func() []string {
	var out []string
	for _, d := range table {
		if d.selectable {
			out = append(out, d.name)
		}
	}
	return out
}()

// StageOrder is every stage a run may report, in the order they run.
func StageOrder() []string {
	out := make([]string, len(table))
	for i, d := range table {
		out[i] = d.name
	}
	return out
}

// StagesHelp is a line per stage: its name, what it does, when it runs.
func StagesHelp() string {
	var b strings.Builder
	for _, d := range table {
		fmt.Fprintf(&b, "  %-12s %s\n", d.name, d.help)
	}
	return b.String()
}

// Selection picks stages by name: From and To bound the run (inclusive),
// Skip leaves some out. validate always runs.
type Selection struct {
	From, To string
	Skip     []string
}

// Validate refuses an unknown stage name or a selection whose stages
// cannot run together (a usage error), before anything runs.
func (s Selection) Validate() error {
	_, err := s.selected()
	return err
}

// selected returns the names of the selectable stages to run, or a usage
// error for an unknown name or a selection whose stages cannot run
// without a skipped one.
func (s Selection) selected() ([]string, error) {
	index := func(n, flag string) (int, error) {
		i := slices.Index(StageNames, n)
		if i < 0 {
			return 0, fail.New(fail.Usage, "use one of "+strings.Join(StageNames, ", "), "%s: unknown stage %q", flag, n)
		}
		return i, nil
	}
	from, to := 0, len(StageNames)-1
	var err error
	if s.From != "" {
		if from, err = index(s.From, "--from"); err != nil {
			return nil, err
		}
	}
	if s.To != "" {
		if to, err = index(s.To, "--to"); err != nil {
			return nil, err
		}
	}
	if from > to {
		return nil, fail.New(fail.Usage, "--from must come before --to", "--from %s is after --to %s", s.From, s.To)
	}
	for _, n := range s.Skip {
		if _, err := index(n, "--skip"); err != nil {
			return nil, err
		}
		if n == "validate" {
			return nil, fail.New(fail.Usage, "drop validate from --skip; it changes nothing and guards the rest", "--skip validate: validate always runs")
		}
	}
	var out []string
	for i, n := range StageNames {
		if n == "validate" || (i >= from && i <= to && !slices.Contains(s.Skip, n)) {
			out = append(out, n)
		}
	}
	if slices.Contains(out, "apply") && !slices.Contains(out, "secret") {
		return nil, fail.New(fail.Usage, "run secret with apply (it holds the dry run that apply carries out)", "apply needs the secret stage")
	}
	if slices.Contains(out, "push") && !slices.Contains(out, "build") {
		return nil, fail.New(fail.Usage, "use `idopipe push --oci-layout DIR` for an image built earlier", "push needs the build stage in a release")
	}
	return out, nil
}

// Stage is one step of a run.
type Stage struct {
	Name string
	Run  func(ctx context.Context) (summary string, err error)
	// During names an earlier stage this one runs alongside: it starts
	// when that stage starts, and is reported right after it, when the run
	// waits for its result. Its failure cancels that stage and becomes that
	// stage's error: a long build is not worth finishing for a release that
	// cannot push or deploy.
	During string
}

// Run runs stages in order, reporting each; it stops at the first error.
// An interrupt (ctx cancelled) ends it with fail.Interrupted naming the
// stages done.
func Run(ctx context.Context, stages []Stage, r report.Reporter, times map[string]float64) error {
	var done []string
	interrupted := func(where string) error {
		did := "nothing done yet"
		if len(done) > 0 {
			did = "done: " + strings.Join(done, ", ")
		}
		// The interrupt's cause is kept for errors.Is; the message stays short.
		return &fail.Error{Class: fail.Interrupted, Msg: fmt.Sprintf("interrupted %s (%s)", where, did), Fix: "rerun; it converges", Err: context.Cause(ctx)}
	}
	alongside := &backgrounds{pending: map[string]*background{}}
	defer alongside.stop()
	for i, s := range stages {
		if err := ctx.Err(); err != nil {
			return interrupted("before stage " + s.Name)
		}
		start := time.Now()
		r.Report(report.Event{Time: start, Kind: report.StageStart, Stage: s.Name})
		var summary string
		var err error
		if b, ok := alongside.pending[s.Name]; ok {
			summary, err = b.wait(ctx)
		} else {
			summary, err = alongside.run(ctx, s, stages[i+1:])
		}
		d := time.Since(start)
		if times != nil {
			times[s.Name] = d.Seconds()
		}
		if err != nil {
			if ctx.Err() != nil {
				err = interrupted("during stage " + s.Name)
			}
			r.Report(report.Event{Time: time.Now(), Kind: report.StageFail, Stage: s.Name, Duration: d, Message: err.Error()})
			return err
		}
		r.Report(report.Event{Time: time.Now(), Kind: report.StageDone, Stage: s.Name, Duration: d, Message: summary})
		done = append(done, s.Name)
	}
	return nil
}

// RunStage runs one stage on its own, as the single-stage commands do.
func RunStage(ctx context.Context, name string, run func(ctx context.Context) (string, error), r report.Reporter) error {
	return Run(ctx, []Stage{{Name: name, Run: run}}, r, nil)
}

// backgrounds are the stages running alongside another one.
type backgrounds struct {
	pending map[string]*background
	wg      sync.WaitGroup
	cancels []context.CancelFunc
}

type background struct {
	done    chan struct{}
	summary string
	err     error
}

func (b *background) wait(ctx context.Context) (string, error) {
	select {
	case <-b.done:
		return b.summary, b.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// run runs s with the later stages that run during it started alongside.
func (bs *backgrounds) run(ctx context.Context, s Stage, later []Stage) (string, error) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	for _, a := range later {
		if a.During != s.Name {
			continue
		}
		b := &background{done: make(chan struct{})}
		bs.pending[a.Name] = b
		bctx, stop := context.WithCancel(ctx)
		bs.cancels = append(bs.cancels, stop)
		bs.wg.Add(1)
		go func() {
			defer bs.wg.Done()
			defer close(b.done)
			b.summary, b.err = a.Run(bctx)
			if b.err != nil {
				cancel(b.err)
			}
		}()
	}
	summary, err := s.Run(sctx)
	// s stopped because a stage alongside failed: that is the error to show
	// (a stage that failed by itself keeps its own).
	if cause := context.Cause(sctx); err != nil && errors.Is(err, context.Canceled) && ctx.Err() == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		return "", cause
	}
	return summary, err
}

// stop cancels what still runs alongside and waits for it to end, so that
// nothing of a run outlives it.
func (bs *backgrounds) stop() {
	for _, c := range bs.cancels {
		c()
	}
	bs.wg.Wait()
}
