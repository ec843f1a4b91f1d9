package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
	"github.com/idopipe/idopipe/pkg/pipeline"
	"github.com/idopipe/idopipe/pkg/publish"
	"github.com/idopipe/idopipe/pkg/report"
	"github.com/idopipe/idopipe/pkg/sign"
	"github.com/idopipe/idopipe/pkg/verify"
)

// The pipeline's own logic is tested here with fakes of its collaborators
// (BuildKit, the registry, the cluster): these tests run without the
// stack, in milliseconds. The stages' real behaviour is tested end to end
// in test/e2e against the real stack.

// calls records, in order, what the collaborators were asked.
type calls struct {
	mu   sync.Mutex
	list []string
}

func (c *calls) add(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list = append(c.list, fmt.Sprintf(format, args...))
}

func (c *calls) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.list)
}

func (c *calls) count(prefix string) int {
	n := 0
	for _, s := range c.all() {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

// index is where the first call with prefix is, -1 if none.
func (c *calls) index(prefix string) int {
	return slices.IndexFunc(c.all(), func(s string) bool { return strings.HasPrefix(s, prefix) })
}

// builder builds instantly, or blocks until released or cancelled.
type builder struct {
	calls *calls
	block chan struct{} // nil: no wait
}

func (b *builder) Build(ctx context.Context, specs []build.Spec) ([]build.Result, error) {
	b.calls.add("build %d", len(specs))
	if b.block != nil {
		select {
		case <-b.block:
		case <-ctx.Done():
			return nil, fail.Wrap(fail.Build, ctx.Err(), "", "build cancelled")
		}
	}
	var out []build.Result
	for _, s := range specs {
		id := s.Name // another version is another image
		if s.Version != "0.4.0" && s.Version != "" {
			id += ":" + s.Version
		}
		out = append(out, build.Result{Layout: s.Layout, Digest: digestOf(id)})
	}
	return out, nil
}

func digestOf(s string) string {
	return "sha256:" + fmt.Sprintf("%064x", len(s)*7919+int(s[0]))
}

// registry holds tags → digests, like a registry would.
type registry struct {
	calls     *calls
	mu        sync.Mutex
	tags      map[string]string
	preflight error
	delay     time.Duration // before the preflight answers
}

func newRegistry(c *calls) *registry { return &registry{calls: c, tags: map[string]string{}} }

func (r *registry) Digest(_ context.Context, tag name.Tag) (string, error) {
	r.calls.add("head %s", tag)
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.tags[tag.String()]
	if !ok {
		return "", fail.New(fail.NotFound, "", "%s not found", tag)
	}
	return d, nil
}

func (r *registry) Preflight(ctx context.Context, repo name.Repository) error {
	r.calls.add("preflight %s", repo)
	if r.delay > 0 {
		select {
		case <-time.After(r.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return r.preflight
}

func (r *registry) Publish(_ context.Context, _, digest string, tag name.Tag, _ ...publish.Option) (name.Digest, publish.Stats, error) {
	r.calls.add("publish %s", tag)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tags[tag.String()] = digest
	return tag.Context().Digest(digest), publish.Stats{Uploaded: 2}, nil
}

func (r *registry) Has(_ context.Context, ref name.Digest) error {
	r.calls.add("has %s", ref)
	r.mu.Lock()
	defer r.mu.Unlock()
	for tag, d := range r.tags {
		if d == ref.DigestStr() && strings.HasPrefix(tag, ref.Context().String()+":") {
			return nil
		}
	}
	return fail.New(fail.NotFound, "", "%s not found", ref)
}

type signer struct{ calls *calls }

func (s signer) Sign(_ context.Context, ref name.Digest) (sign.Result, error) {
	s.calls.add("sign %s", ref)
	return sign.Result{}, nil
}

type verifier struct {
	calls  *calls
	reg    *registry
	signed map[string]bool // digests signed
}

func (v *verifier) Pull(ctx context.Context, tag name.Tag, digest string) (verify.Report, error) {
	v.calls.add("pull %s", tag)
	have, err := v.reg.Digest(ctx, tag)
	if err != nil {
		return verify.Report{}, err
	}
	if have != digest {
		return verify.Report{}, fail.New(fail.Verify, "", "%s is %s, not %s", tag, have, digest)
	}
	return verify.Report{Ref: tag.String(), Digest: digest}, nil
}

func (v *verifier) Signed(_ context.Context, ref name.Digest, _ sign.Policy) (sign.Verified, error) {
	v.calls.add("signed %s", ref)
	if !v.signed[ref.DigestStr()] {
		return sign.Verified{}, fail.New(fail.Unsigned, "", "%s is not signed", ref)
	}
	return sign.Verified{Key: "test.pub"}, nil
}

// kube is a cluster that plans a create for what it does not have and
// keeps what apply writes.
type kube struct {
	calls   *calls
	mu      sync.Mutex
	objects map[string]string // refs applied, and what (as JSON)
	secret  bool
	block   string // a call that blocks until its context ends
	fail    map[string]error
	// revisions are the history, oldest first, with each one's objects.
	revisions []cluster.Revision
	revObjs   map[int][]manifest.Object
	lost      error // the lock's loss
	failWaits int   // how many waits fail, the first ones
	compare   bool  // plan an update for an object whose content changed (else: one that exists is unchanged)
}

func newKube(c *calls) *kube {
	return &kube{calls: c, objects: map[string]string{}, fail: map[string]error{}, revObjs: map[int][]manifest.Object{}}
}

func (k *kube) wait(ctx context.Context, call string) error {
	k.calls.add("%s", call)
	if k.block == call {
		<-ctx.Done()
		return ctx.Err()
	}
	return k.fail[call]
}

func (k *kube) Host() string                  { return "https://fake" }
func (k *kube) WhoAmI(context.Context) string { return "tester" }
func (k *kube) LockLost() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lost
}
func (k *kube) Revisions(ctx context.Context, _ string) ([]cluster.Revision, error) {
	if err := k.wait(ctx, "revisions"); err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	out := slices.Clone(k.revisions)
	slices.Reverse(out)
	return out, nil
}
func (k *kube) RevisionObjects(ctx context.Context, _ string, n int) (cluster.Revision, []manifest.Object, error) {
	if err := k.wait(ctx, fmt.Sprintf("revision %d", n)); err != nil {
		return cluster.Revision{}, nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, r := range k.revisions {
		if r.Number == n {
			return r, k.revObjs[n], nil
		}
	}
	return cluster.Revision{}, nil, fail.New(fail.Usage, "", "no revision %d", n)
}
func (k *kube) RecordRevision(ctx context.Context, rev cluster.Revision, objs []manifest.Object, _ int) (cluster.Revision, error) {
	if err := k.wait(ctx, "write revision"); err != nil {
		return rev, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	rev.Number = len(k.revisions) + 1
	k.revisions = append(k.revisions, rev)
	k.revObjs[rev.Number] = objs
	return rev, nil
}
func (k *kube) SetRevisionStatus(ctx context.Context, _ string, n int, st cluster.RevisionStatus, reason string) error {
	k.calls.add("revision %d %s", n, st)
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := range k.revisions {
		r := &k.revisions[i]
		switch {
		case r.Number == n:
			r.Status, r.Reason = st, reason
		case st == cluster.Deployed && r.Status == cluster.Deployed:
			r.Status = cluster.Superseded
		}
	}
	return nil
}
func (k *kube) CheckTarget(ctx context.Context, _, _ string) error {
	return k.wait(ctx, "check-target")
}
func (k *kube) Namespaced(gvk schema.GroupVersionKind) (bool, error) {
	return gvk.Kind != "Namespace" && gvk.Kind != "CustomResourceDefinition", nil
}
func (k *kube) Plan(ctx context.Context, objs []manifest.Object, _ cluster.ApplyOptions) ([]cluster.Change, error) {
	if err := k.wait(ctx, fmt.Sprintf("plan %d", len(objs))); err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	var plan []cluster.Change
	for _, o := range objs {
		ref := o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
		act := cluster.Create
		if was, ok := k.objects[ref]; ok {
			act = cluster.NoChange
			if k.compare && was != asJSON(o) {
				act = cluster.Update
			}
		}
		plan = append(plan, cluster.Change{Object: o, Ref: ref, Action: act})
	}
	return plan, nil
}
func (k *kube) NamespaceMissing(ctx context.Context, _ string) (bool, error) {
	return false, k.wait(ctx, "namespace-missing")
}
func (k *kube) SecretAction(ctx context.Context, _ cluster.PullSecret) (cluster.Action, error) {
	if err := k.wait(ctx, "secret-action"); err != nil {
		return "", err
	}
	if k.secret {
		return cluster.NoChange, nil
	}
	return cluster.Create, nil
}
func (k *kube) Inventory(ctx context.Context, _ string) ([]cluster.Entry, error) {
	return nil, k.wait(ctx, "inventory")
}
func (k *kube) PrunePlan(ctx context.Context, _ []cluster.Entry, _ []manifest.Object) ([]cluster.Change, error) {
	return nil, k.wait(ctx, "prune-plan")
}
func (k *kube) EnsureNamespace(ctx context.Context, _ string) (bool, error) {
	return false, k.wait(ctx, "write namespace")
}
func (k *kube) DeleteNamespace(ctx context.Context, _ string) error {
	return k.wait(ctx, "delete namespace")
}
func (k *kube) Lock(ctx context.Context, _, _ string, _ time.Duration, _ func(string)) (func(), error) {
	if err := k.wait(ctx, "lock"); err != nil {
		return nil, err
	}
	return func() { k.calls.add("unlock") }, nil
}
func (k *kube) WaitEstablished(ctx context.Context, names []string, _ time.Duration) error {
	return k.wait(ctx, "established")
}
func (k *kube) ApplySecret(ctx context.Context, _ cluster.PullSecret, dryRun bool) (cluster.Status, error) {
	if dryRun {
		return cluster.DryRun, k.wait(ctx, "secret dry-run")
	}
	if err := k.wait(ctx, "write secret"); err != nil {
		return "", err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.secret {
		return cluster.Unchanged, nil
	}
	k.secret = true
	return cluster.Created, nil
}
func (k *kube) Execute(ctx context.Context, plan []cluster.Change, _ cluster.ApplyOptions, _ func(string)) ([]cluster.Applied, error) {
	if len(plan) == 0 {
		return nil, nil
	}
	if err := k.wait(ctx, fmt.Sprintf("write %d", len(plan))); err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []cluster.Applied
	for _, ch := range plan {
		st := cluster.Unchanged
		if ch.Action != cluster.NoChange {
			st = cluster.Created
		}
		k.objects[ch.Ref] = asJSON(ch.Object)
		out = append(out, cluster.Applied{Ref: ch.Ref, Status: st})
	}
	return out, nil
}
func (k *kube) CreateNeeded(ctx context.Context, _ []cluster.Change, _ cluster.ApplyOptions, _ func(string)) ([]cluster.Applied, error) {
	return nil, k.wait(ctx, "create-needed")
}
func (k *kube) WriteInventory(ctx context.Context, _ string, _ []cluster.Entry) error {
	return k.wait(ctx, "write inventory")
}
func (k *kube) Wait(ctx context.Context, _ string, objs []manifest.Object, _ cluster.WaitOptions) (cluster.Waited, error) {
	if err := k.wait(ctx, "wait"); err != nil {
		return cluster.Waited{}, err
	}
	k.mu.Lock()
	failing := k.failWaits > 0
	k.failWaits--
	k.mu.Unlock()
	if failing {
		return cluster.Waited{Pods: []cluster.PodState{{Name: "planner", Phase: "Running"}}},
			fail.New(fail.NotReady, "read its log lines", "Pod ido/planner: crash-loop: back-off restarting")
	}
	var w cluster.Waited
	for _, p := range manifest.Pods(objs) {
		w.Pods = append(w.Pods, cluster.PodState{Name: p, Ready: true, Phase: "Running"})
	}
	return w, nil
}

func asJSON(o manifest.Object) string {
	b, _ := json.Marshal(o.Object)
	return string(b)
}

// events records what the pipeline reports.
type events struct {
	mu   sync.Mutex
	list []report.Event
}

func (e *events) Report(ev report.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, ev)
}

// started are the stages reported as started, in order.
func (e *events) started() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.list {
		if ev.Kind == report.StageStart {
			out = append(out, ev.Stage)
		}
	}
	return out
}

// failed is the stage reported as failed, "" if none.
func (e *events) failed() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.list {
		if ev.Kind == report.StageFail {
			return ev.Stage
		}
	}
	return ""
}

// fixture is a release's inputs and fakes.
type fixture struct {
	o     pipeline.Options
	calls *calls
	build *builder
	reg   *registry
	ver   *verifier
	kube  *kube
}

const podManifest = `apiVersion: v1
kind: ServiceAccount
metadata:
  name: planner-service-account
---
apiVersion: v1
kind: Pod
metadata:
  name: planner
spec:
  serviceAccountName: planner-service-account
  containers:
  - name: planner
    image: planner:0.4.0
  - name: actuator
    image: actuator:0.4.0
`

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"planner/Dockerfile", "actuator/Dockerfile"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("FROM scratch\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := filepath.Join(dir, "manifest.yaml")
	write(t, m, podManifest)
	c := &calls{}
	reg := newRegistry(c)
	f := &fixture{
		calls: c, build: &builder{calls: c}, reg: reg,
		ver: &verifier{calls: c, reg: reg, signed: map[string]bool{}}, kube: newKube(c),
		o: pipeline.Options{
			Images: []build.Spec{{Name: "planner", Version: "0.4.0", Context: filepath.Join(dir, "planner"),
				Dockerfile: filepath.Join(dir, "planner", "Dockerfile"), Layout: filepath.Join(dir, "oci")}},
			Target: pipeline.Target{Registry: "registry.test", Owner: "My-Org"},
			Deploy: pipeline.DeployConfig{Manifests: []string{m}, Namespace: "ido", SecretName: "ghcr-secret", Pin: true, LockHolder: "test"},
		},
	}
	return f
}

// withActuator adds an extra image.
func (f *fixture) withActuator() *fixture {
	a := f.o.Images[0]
	a.Name, a.Context, a.Dockerfile, a.Layout = "actuator", filepath.Join(filepath.Dir(a.Context), "actuator"), filepath.Join(filepath.Dir(a.Context), "actuator", "Dockerfile"), ""
	f.o.Images = append(f.o.Images, a)
	return f
}

func (f *fixture) deps() pipeline.Deps {
	return pipeline.Deps{Builder: f.build, Publisher: f.reg, Verifier: f.ver,
		Connect: func(context.Context) (pipeline.Cluster, error) { f.calls.add("connect"); return f.kube, nil }}
}

func (f *fixture) release(ctx context.Context, t *testing.T) (pipeline.Result, *events, error) {
	t.Helper()
	ev := &events{}
	res, err := pipeline.Release(ctx, f.o, f.deps(), ev)
	return res, ev, err
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
