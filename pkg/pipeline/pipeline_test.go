package pipeline_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/pipeline"
	"github.com/idopipe/idopipe/pkg/sign"
)

// TestStageSelection: the table decides which stages run, in which order,
// for each selection and mode; impossible selections are usage errors
// before anything runs.
func TestStageSelection(t *testing.T) {
	all := []string{"validate", "build", "checks", "push", "verify-pull", "secret", "apply", "wait"}
	for _, tc := range []struct {
		name   string
		sel    pipeline.Selection
		dryRun bool
		deploy bool
		want   []string
	}{
		{name: "release", want: all},
		{name: "--skip wait", sel: pipeline.Selection{Skip: []string{"wait"}}, want: all[:7]},
		{name: "--to push: no cluster", sel: pipeline.Selection{To: "push"}, want: []string{"validate", "build", "checks", "push"}},
		{name: "--from secret: resolve instead of build", sel: pipeline.Selection{From: "secret"},
			want: []string{"validate", "checks", "resolve", "secret", "apply", "wait"}},
		{name: "--to validate", sel: pipeline.Selection{To: "validate"}, want: []string{"validate", "checks"}},
		{name: "dry run", dryRun: true, want: []string{"validate", "checks", "plan"}},
		{name: "deploy", deploy: true, want: []string{"validate", "checks", "secret", "apply", "wait"}},
		{name: "deploy dry run", deploy: true, dryRun: true, want: []string{"validate", "checks", "plan"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.o.Stages, f.o.DryRun = tc.sel, tc.dryRun
			ev := &events{}
			var err error
			if tc.deploy {
				f.o.Image = "registry.test/my-org/planner:0.4.0"
				f.reg.tags[f.o.Image] = digestOf("planner")
				_, err = pipeline.Deploy(context.Background(), f.o, f.deps(), ev)
			} else {
				if slices.Contains(tc.want, "resolve") {
					f.reg.tags["registry.test/my-org/planner:0.4.0"] = digestOf("planner")
				}
				_, err = pipeline.Release(context.Background(), f.o, f.deps(), ev)
			}
			if err != nil {
				t.Fatalf("run failed: %v\ncalls: %q", err, f.calls.all())
			}
			if got := ev.started(); !slices.Equal(got, tc.want) {
				t.Errorf("stages %q, want %q", got, tc.want)
			}
			if tc.dryRun && (f.calls.count("write") > 0 || f.calls.count("publish") > 0 || f.calls.count("build") > 0) {
				t.Errorf("a dry run wrote, built or pushed: %q", f.calls.all())
			}
			if !slices.Contains(tc.want, "secret") && !tc.dryRun && f.calls.count("connect") > 0 {
				t.Errorf("no cluster stage, but the cluster was asked: %q", f.calls.all())
			}
		})
	}

	for _, tc := range []struct {
		sel  pipeline.Selection
		want string
	}{
		{pipeline.Selection{From: "deploy"}, `--from: unknown stage "deploy"`},
		{pipeline.Selection{From: "wait", To: "build"}, "--from wait is after --to build"},
		{pipeline.Selection{Skip: []string{"validate"}}, "validate always runs"},
		{pipeline.Selection{Skip: []string{"secret"}}, "apply needs the secret stage"},
		{pipeline.Selection{From: "push"}, "push needs the build stage"},
	} {
		f := newFixture(t)
		f.o.Stages = tc.sel
		_, ev, err := f.release(context.Background(), t)
		if fail.ClassOf(err) != fail.Usage || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want a usage error %q", tc.sel, err, tc.want)
		}
		if len(ev.started()) > 0 || len(f.calls.all()) > 0 {
			t.Errorf("%+v: ran %q, called %q", tc.sel, ev.started(), f.calls.all())
		}
	}
}

// TestStageOrderIsTheTable: what the help and the job summary read is the
// order runs report.
func TestStageOrderIsTheTable(t *testing.T) {
	order := pipeline.StageOrder()
	want := []string{"validate", "revision", "build", "checks", "resolve", "push", "verify-pull", "plan", "secret", "apply", "wait"}
	if !slices.Equal(order, want) {
		t.Errorf("StageOrder() = %q, want %q", order, want)
	}
	help := pipeline.StagesHelp()
	last := -1
	for _, n := range order {
		i := strings.Index(help, "  "+n+" ")
		if i < 0 || i < last {
			t.Errorf("StagesHelp() lacks %s, or lists it out of order:\n%s", n, help)
		}
		last = i
	}
	for _, n := range pipeline.StageNames {
		if !slices.Contains(order, n) {
			t.Errorf("selectable stage %s is not in the order", n)
		}
	}
}

// TestReleaseOneImageList: the main image and an extra one go through the
// same stages: built together, each pushed (the extra after the main one),
// pulled back, and put into the Pod by digest.
func TestReleaseOneImageList(t *testing.T) {
	f := newFixture(t).withActuator()
	res, _, err := f.release(context.Background(), t)
	if err != nil {
		t.Fatal(err)
	}
	if f.calls.count("build 2") != 1 {
		t.Errorf("the two images were not built in one call: %q", f.calls.all())
	}
	for _, img := range []string{"planner", "actuator"} {
		tag := "registry.test/my-org/" + img + ":0.4.0"
		if f.calls.count("preflight registry.test/my-org/"+img) != 1 || f.calls.count("publish "+tag) != 1 || f.calls.count("pull "+tag) != 1 {
			t.Errorf("%s did not go through preflight, push and pull once each: %q", img, f.calls.all())
		}
	}
	if f.calls.index("publish registry.test/my-org/planner") > f.calls.index("publish registry.test/my-org/actuator") {
		t.Errorf("the extra image was pushed before the main one: %q", f.calls.all())
	}
	if res.Ref != "registry.test/my-org/planner:0.4.0@"+digestOf("planner") || len(res.Extra) != 1 || res.Extra[0].Ref != "registry.test/my-org/actuator:0.4.0@"+digestOf("actuator") {
		t.Errorf("result images: %+v, extra %+v", res.Ref, res.Extra)
	}
	if len(res.Pods) != 1 || !res.Pods[0].Ready {
		t.Errorf("pods: %+v", res.Pods)
	}
}

// TestRerunSkipsThePush: a rerun (after a later stage failed) finds the
// images in the registry under their tags and does not push them again,
// but still signs them; an extra --tag pushes again.
func TestRerunSkipsThePush(t *testing.T) {
	f := newFixture(t).withActuator()
	f.kube.fail["wait"] = fail.New(fail.NotReady, "", "planner not Ready")
	if _, _, err := f.release(context.Background(), t); fail.ClassOf(err) != fail.NotReady {
		t.Fatalf("first run: %v", err)
	}
	delete(f.kube.fail, "wait")
	f.calls.list = nil
	d := f.deps()
	d.Signer = signer{f.calls}
	ev := &events{}
	res, err := pipeline.Release(context.Background(), f.o, d, ev)
	if err != nil {
		t.Fatal(err)
	}
	if n := f.calls.count("publish"); n != 0 {
		t.Errorf("the rerun pushed %d images again: %q", n, f.calls.all())
	}
	if n := f.calls.count("sign"); n != 2 {
		t.Errorf("the rerun signed %d images, want 2", n)
	}
	if res.Blobs != nil || res.Digest != digestOf("planner") || len(res.Extra) != 1 {
		t.Errorf("a skipped push reports blobs %+v, digest %s, extra %+v", res.Blobs, res.Digest, res.Extra)
	}
	var pushed string
	for _, e := range ev.list {
		if e.Stage == "push" && e.Message != "" && strings.Contains(e.Message, "already pushed") {
			pushed = e.Message
		}
	}
	if strings.Count(pushed, "(already pushed)") != 2 {
		t.Errorf("push summary %q", pushed)
	}

	f.calls.list = nil
	f.o.Target.Tags = []string{"latest"}
	if _, _, err := f.release(context.Background(), t); err != nil {
		t.Fatal(err)
	}
	if n := f.calls.count("publish"); n != 2 {
		t.Errorf("with --tag the rerun pushed %d images, want 2", n)
	}
}

// TestResumeFromSecret: --from secret resolves what the registry has and
// deploys it by digest, building and pushing nothing.
func TestResumeFromSecret(t *testing.T) {
	f := newFixture(t)
	f.reg.tags["registry.test/my-org/planner:0.4.0"] = digestOf("planner")
	f.o.Stages = pipeline.Selection{From: "secret"}
	res, _, err := f.release(context.Background(), t)
	if err != nil {
		t.Fatal(err)
	}
	if f.calls.count("build") != 0 || f.calls.count("publish") != 0 {
		t.Errorf("resume built or pushed: %q", f.calls.all())
	}
	if res.Ref != "registry.test/my-org/planner:0.4.0@"+digestOf("planner") {
		t.Errorf("resumed release deploys %q", res.Ref)
	}
}

// TestFailedCheckStopsTheBuild: a check that fails alongside a long build
// cancels it; the check's error is the release's, reported on the build
// stage, and nothing is pushed or written.
func TestFailedCheckStopsTheBuild(t *testing.T) {
	f := newFixture(t)
	f.build.block = make(chan struct{}) // a build that would take for ever
	denied := fail.New(fail.Credentials, "grant write:packages", "registry denied the push")
	f.reg.preflight = denied
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, ev, err := f.release(ctx, t)
	if !errors.Is(err, denied) {
		t.Fatalf("release error %v, want the check's", err)
	}
	if ev.failed() != "build" {
		t.Errorf("failed stage %q, want build (cancelled by the check)", ev.failed())
	}
	if f.calls.count("publish") != 0 || f.calls.count("write") != 0 {
		t.Errorf("pushed or wrote after a failed check: %q", f.calls.all())
	}
	if ctx.Err() != nil {
		t.Error("the build was not cancelled: the release waited for the deadline")
	}
}

// TestCheckFailingAfterTheBuild: the build ends first; the checks stage
// then fails the release, before the push.
func TestCheckFailingAfterTheBuild(t *testing.T) {
	f := newFixture(t)
	f.reg.delay = 100 * time.Millisecond
	f.kube.fail["check-target"] = fail.New(fail.Cluster, "-n", "namespace ido is being deleted")
	_, ev, err := f.release(context.Background(), t)
	if fail.ClassOf(err) != fail.Cluster || ev.failed() != "checks" {
		t.Fatalf("got %v in stage %q, want the cluster check in stage checks", err, ev.failed())
	}
	if got := ev.started(); !slices.Equal(got, []string{"validate", "build", "checks"}) {
		t.Errorf("stages %q", got)
	}
	if f.calls.count("publish") != 0 {
		t.Errorf("pushed: %q", f.calls.all())
	}
}

// TestInterrupt: an interrupt during a stage ends the release with
// fail.Interrupted naming what was done; the cause is context.Canceled,
// and the release lock is given back.
func TestInterrupt(t *testing.T) {
	f := newFixture(t)
	f.kube.block = "write 2" // the apply
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for f.calls.count("write 2") == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, _, err := f.release(ctx, t)
	want := "interrupted during stage apply (done: validate, build, checks, push, verify-pull, secret)"
	if fail.ClassOf(err) != fail.Interrupted || !strings.Contains(err.Error(), want) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want %q wrapping context.Canceled", err, want)
	}
	if f.calls.count("unlock") != 1 {
		t.Errorf("the release lock was not given back: %q", f.calls.all())
	}

	// Before a stage starts: nothing is run.
	f = newFixture(t)
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	_, ev, err := f.release(ctx, t)
	if fail.ClassOf(err) != fail.Interrupted || !strings.Contains(err.Error(), "interrupted before stage validate (nothing done yet)") || len(ev.started()) != 0 {
		t.Errorf("cancelled before the start: %v, stages %q", err, ev.started())
	}
}

// TestLockBeforeTheFirstWrite: the secret stage takes the release lock
// right after the namespace (the Lease lives there), before the CRDs, the
// pull Secret or any object is written.
func TestLockBeforeTheFirstWrite(t *testing.T) {
	f := newFixture(t)
	crd := f.o.Deploy.Manifests[0] + ".crd.yaml"
	write(t, crd, `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: intents.ido.intel.com
spec:
  group: ido.intel.com
  scope: Namespaced
  names: {kind: Intent, plural: intents}
`)
	f.o.Deploy.CRDs = []string{crd}
	if _, _, err := f.release(context.Background(), t); err != nil {
		t.Fatal(err)
	}
	c := f.calls.all()
	lock := slices.Index(c, "lock")
	for i, call := range c {
		if strings.HasPrefix(call, "write") && call != "write namespace" && (lock < 0 || i < lock) {
			t.Fatalf("%q before the lock: %q", call, c)
		}
	}
	if ns := slices.Index(c, "write namespace"); ns < 0 || ns > lock {
		t.Errorf("namespace not made before the lock: %q", c)
	}
	if est := slices.Index(c, "established"); est < lock || est > slices.Index(c, "write secret") {
		t.Errorf("CRDs not Established between the lock and the pull Secret: %q", c)
	}
}

// TestSignatureGate: with VerifyKeys an unsigned image is refused in
// verify-pull, before any cluster write; a deploy resolves a tag to its
// digest and checks that digest's signature before the first write.
func TestSignatureGate(t *testing.T) {
	f := newFixture(t)
	f.o.Policy = sign.Policy{Keys: []sign.Key{{Name: "test.pub"}}}
	_, ev, err := f.release(context.Background(), t)
	if fail.ClassOf(err) != fail.Unsigned || ev.failed() != "verify-pull" || f.calls.count("write") != 0 {
		t.Fatalf("unsigned release: %v in %q, calls %q", err, ev.failed(), f.calls.all())
	}

	f = newFixture(t)
	f.o.Policy = sign.Policy{Keys: []sign.Key{{Name: "test.pub"}}}
	f.o.Image = "registry.test/my-org/planner:0.4.0"
	f.reg.tags[f.o.Image] = digestOf("planner")
	f.ver.signed[digestOf("planner")] = true
	res, err := pipeline.Deploy(context.Background(), f.o, f.deps(), &events{})
	if err != nil {
		t.Fatal(err)
	}
	c := f.calls.all()
	if s := slices.Index(c, "signed registry.test/my-org/planner@"+digestOf("planner")); s < 0 || s > slices.Index(c, "write namespace") {
		t.Errorf("signature not checked before the first write: %q", c)
	}
	if res.Digest != digestOf("planner") || res.Signature == nil {
		t.Errorf("deploy result %+v", res)
	}
}

// TestDryRunCountsChanges: the plan counts what a deploy would change (for
// diff's exit status): everything on a new namespace, nothing after.
func TestDryRunCountsChanges(t *testing.T) {
	f := newFixture(t)
	f.o.DryRun = true
	res, _, err := f.release(context.Background(), t)
	if err != nil || res.Changes != 3 { // ServiceAccount, Pod, pull Secret
		t.Fatalf("dry run on an empty cluster: %v, %d changes, want 3", err, res.Changes)
	}
	f.o.DryRun = false
	if _, _, err := f.release(context.Background(), t); err != nil {
		t.Fatal(err)
	}
	f.o.DryRun = true
	if res, _, err = f.release(context.Background(), t); err != nil || res.Changes != 0 {
		t.Errorf("dry run after the release: %v, %d changes, want 0", err, res.Changes)
	}
}

// TestPushAlone: the push command's path is the push stage.
func TestPushAlone(t *testing.T) {
	f := newFixture(t)
	d := f.deps()
	d.Signer = signer{f.calls}
	ev := &events{}
	res, err := pipeline.Push(context.Background(), f.o, d, []build.Result{{Layout: "/l", Digest: digestOf("planner")}}, ev)
	if err != nil {
		t.Fatal(err)
	}
	if got := ev.started(); !slices.Equal(got, []string{"push"}) || f.calls.count("publish") != 1 || f.calls.count("sign") != 1 {
		t.Errorf("stages %q, calls %q", got, f.calls.all())
	}
	if res.Ref != "registry.test/my-org/planner:0.4.0@"+digestOf("planner") || res.Blobs == nil || res.Blobs.Uploaded != 2 {
		t.Errorf("push result %+v", res)
	}
}
