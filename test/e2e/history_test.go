package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/fail"
)

// revisionJSON is what `idopipe history -o json` says of one revision.
type revisionJSON struct {
	Revision    int    `json:"revision"`
	Status      string `json:"status"`
	Description string `json:"description"`
	Reason      string `json:"reason"`
	RollbackTo  int    `json:"rollbackTo"`
	By          struct {
		User string `json:"user"`
	} `json:"by"`
	Images []struct {
		Name   string `json:"name"`
		Image  string `json:"image"`
		Digest string `json:"digest"`
	} `json:"images"`
	Objects      int `json:"objects"`
	ObjectsBytes int `json:"objectsBytes"`
}

// history runs `idopipe history -n ns -o json` and returns its revisions.
func history(t *testing.T, ns string) []revisionJSON {
	t.Helper()
	r := idopipe(t, nil, "history", "-n", ns, "-o", "json")
	if r.code != 0 {
		t.Fatalf("history:\n%s", r)
	}
	var revs []revisionJSON
	if err := jsonField(r, "revisions", &revs); err != nil {
		t.Fatalf("history result: %v\n%s", err, r)
	}
	return revs
}

// rollbackArgs is a rollback of ns with the stack's registry (its token
// for the pull Secret and the check that the images are still there).
func rollbackArgs(ns string, extra ...string) []string {
	return append([]string{"rollback", "-n", ns, "--registry", stack.Registry.Host, "--registry-ca", stack.Registry.CAFile, "--timeout", "60s"}, extra...)
}

// podImageID is the imageID the kubelet reports for the Pod's first
// container: what really runs.
func podImageID(t *testing.T, ns, pod string) string {
	t.Helper()
	p, err := stack.Cluster.Client.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cs := range p.Status.ContainerStatuses {
		return cs.ImageID
	}
	return ""
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

const extraConfigMap = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: history-extra\ndata:\n  added: by-the-second-release\n"

// TestHistoryAndRollback: two releases with different images and
// manifests are both in the history; rollback runs the first digest again
// (the kubelet's imageID says so) and prunes what the second added; the
// history survives a plain teardown and goes with the namespace.
func TestHistoryAndRollback(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ns = "history-rollback"
	r1 := idopipe(t, nil, releaseArgs(ns, "-o", "json")...)
	if r1.code != 0 {
		t.Fatalf("first release:\n%s", r1)
	}
	first := parseRelease(t, r1).Result.Digest
	r2 := idopipe(t, nil, releaseWith(ns, fixtureWith(t, ns, nil, extraConfigMap), "--version", "0.4.1", "-o", "json")...)
	if r2.code != 0 {
		t.Fatalf("second release:\n%s", r2)
	}
	second := parseRelease(t, r2).Result.Digest
	if first == second {
		t.Fatalf("both releases pushed %s: the test needs two images", first)
	}
	if id := podImageID(t, ns, "planner"); !strings.Contains(id, second) {
		t.Fatalf("after the second release the planner runs %s, want %s", id, second)
	}

	revs := history(t, ns)
	if len(revs) != 2 || revs[0].Revision != 2 || revs[1].Revision != 1 {
		t.Fatalf("history %+v, want revisions 2 and 1, newest first", revs)
	}
	if revs[0].Status != "deployed" || revs[1].Status != "superseded" || revs[0].Images[0].Digest != second || revs[1].Images[0].Digest != first {
		t.Errorf("history %+v", revs)
	}
	if revs[0].By.User == "" || revs[0].Objects < 9 || revs[0].ObjectsBytes == 0 || revs[0].ObjectsBytes > 64<<10 {
		t.Errorf("revision 2: by %q, %d objects in %d bytes", revs[0].By.User, revs[0].Objects, revs[0].ObjectsBytes)
	}
	t.Logf("revision 2: %d objects in %d bytes compressed, by %s", revs[0].Objects, revs[0].ObjectsBytes, revs[0].By.User)
	table := idopipe(t, nil, "history", "-n", ns)
	if table.code != 0 || !strings.Contains(table.stdout, "REVISION") || !strings.Contains(table.stdout, "superseded") || strings.Index(table.stdout, "\n2 ") > strings.Index(table.stdout, "\n1 ") {
		t.Errorf("history table:\n%s", table)
	}
	show := idopipe(t, nil, "history", "2", "-n", ns)
	if show.code != 0 || !strings.Contains(show.stdout, "diff against revision 1") || !strings.Contains(show.stdout, "ConfigMap/"+ns+"/history-extra added") ||
		!strings.Contains(show.stdout, "-    image: "+repoOf(ns)+":0.4.0@"+first) {
		t.Errorf("history 2:\n%s", show)
	}

	start := time.Now()
	rb := idopipe(t, nil, rollbackArgs(ns, "-o", "json")...)
	if rb.code != 0 {
		t.Fatalf("rollback:\n%s", rb)
	}
	t.Logf("rollback to revision 1: %.1fs", time.Since(start).Seconds())
	if id := podImageID(t, ns, "planner"); !strings.Contains(id, first) {
		t.Errorf("after the rollback the planner runs %s, want %s", id, first)
	}
	if _, err := stack.Cluster.Client.CoreV1().ConfigMaps(ns).Get(ctx, "history-extra", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ConfigMap history-extra, added by revision 2, not pruned by the rollback: %v", err)
	}
	revs = history(t, ns)
	if len(revs) != 3 || revs[0].Description != "rollback to 1" || revs[0].Status != "deployed" || revs[0].RollbackTo != 1 || revs[1].Status != "rolled-back" || revs[0].Images[0].Digest != first {
		t.Errorf("history after the rollback %+v", revs)
	}

	// A plain teardown leaves the history; deleting the namespace takes it.
	if td := idopipe(t, nil, "teardown", "-n", ns); td.code != 0 {
		t.Fatalf("teardown:\n%s", td)
	}
	if revs := history(t, ns); len(revs) != 3 {
		t.Errorf("%d revisions after teardown, want the 3", len(revs))
	}
	if td := idopipe(t, nil, "teardown", "-n", ns, "--delete-namespace"); td.code != 0 {
		t.Fatalf("teardown --delete-namespace:\n%s", td)
	}
	if revs := history(t, ns); len(revs) != 0 {
		t.Errorf("%d revisions after teardown --delete-namespace, want none", len(revs))
	}
}

// TestRollbackOnFailure: a release whose planner crash-loops, with
// --rollback-on-failure, ends with the previous Pod running again and the
// failure's exit code, saying both.
func TestRollbackOnFailure(t *testing.T) {
	t.Parallel()
	const ns = "history-on-failure"
	r1 := idopipe(t, nil, releaseArgs(ns, "-o", "json")...)
	if r1.code != 0 {
		t.Fatalf("first release:\n%s", r1)
	}
	first := parseRelease(t, r1).Result.Digest
	// The container exits at once; the probe keeps the Pod from counting
	// as Ready in the moment between its start and its exit.
	crash := fixtureWith(t, ns, map[string]string{`      args: ["-config", "/config/defaults.json", "-v", "2"]` + "\n": `      args: ["-no-such-flag"]` + "\n" +
		"      readinessProbe: {tcpSocket: {port: 33333}, periodSeconds: 1}\n"})
	start := time.Now()
	r2 := idopipe(t, nil, releaseWith(ns, crash, "--version", "0.4.2", "--rollback-on-failure")...)
	took := time.Since(start)
	last := lastLine(r2.stderr)
	if r2.code != int(fail.NotReady) || !strings.Contains(last, "crash-loop") || !strings.Contains(last, "rolled back to revision 1") || !strings.Contains(last, first) {
		t.Fatalf("release that crash-loops with --rollback-on-failure: exit %d, want %d naming the crash and the rollback:\n%s", r2.code, fail.NotReady, r2)
	}
	t.Logf("crash-looping release, rolled back, in %.1fs: %s", took.Seconds(), last)
	p, err := stack.Cluster.Client.CoreV1().Pods(ns).Get(context.Background(), "planner", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !podReady(p) || p.Status.Phase != corev1.PodRunning || !strings.Contains(podImageID(t, ns, "planner"), first) {
		t.Errorf("planner after the rollback: %s ready=%v image %s, want the first digest Running", p.Status.Phase, podReady(p), podImageID(t, ns, "planner"))
	}
	revs := history(t, ns)
	if len(revs) != 3 || revs[1].Status != "failed" || !strings.Contains(revs[1].Reason, "crash-loop") || revs[0].Description != "rollback to 1" || revs[0].Status != "deployed" {
		t.Errorf("history %+v", revs)
	}
}

// TestRollbackImageGone: a revision whose image the registry no longer has
// is refused before anything is written, naming the digest.
func TestRollbackImageGone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ns = "history-gone"
	r1 := idopipe(t, nil, releaseArgs(ns, "--version", "0.4.3-gone", "-o", "json")...)
	if r1.code != 0 {
		t.Fatalf("release:\n%s", r1)
	}
	res := parseRelease(t, r1).Result
	tag, err := name.NewTag(res.Image)
	if err != nil {
		t.Fatal(err)
	}
	deleteManifest(t, tag.Context().Digest(res.Digest))
	before := resourceVersions(t, ctx, ns)
	r := idopipe(t, nil, rollbackArgs(ns, "1")...)
	if r.code != int(fail.NotFound) || !strings.Contains(lastLine(r.stderr), res.Digest) || !strings.Contains(lastLine(r.stderr), "revision 1") {
		t.Fatalf("rollback to a revision whose image is gone: exit %d, want %d naming %s:\n%s", r.code, fail.NotFound, res.Digest, r)
	}
	after := resourceVersions(t, ctx, ns)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("the refused rollback wrote %s", k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("the refused rollback created %s", k)
		}
	}
	if revs := history(t, ns); len(revs) != 1 {
		t.Errorf("%d revisions after the refused rollback, want 1", len(revs))
	}
}

// deleteManifest deletes ref's manifest from the stack's registry.
func deleteManifest(t *testing.T, ref name.Digest) {
	t.Helper()
	client, err := stack.Registry.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	auth := authn.FromConfig(authn.AuthConfig{Username: stack.Registry.Username, Password: stack.Registry.Password})
	if err := remote.Delete(ref, remote.WithAuth(auth), remote.WithTransport(client.Transport.(*http.Transport))); err != nil {
		t.Fatalf("delete %s: %v", ref, err)
	}
}

// TestBarePodDeletedDuringWait: deleting a bare Pod of the manifest while
// the release waits for it ends the wait at once, saying a rerun
// recreates it, instead of waiting out --timeout.
func TestBarePodDeletedDuringWait(t *testing.T) {
	t.Parallel()
	const ns = "history-pod-gone"
	never := fixtureWith(t, ns, map[string]string{`      args: ["-config", "/config/defaults.json", "-v", "2"]` + "\n": `      args: ["-config", "/config/defaults.json", "-v", "2"]` + "\n" +
		"      readinessProbe: {tcpSocket: {port: 4444}, periodSeconds: 1}\n"})
	var deleted time.Time
	args := withArg(releaseWith(ns, never), "--timeout", "120s")
	r := runUntil(t, args, func(string) bool {
		p, err := stack.Cluster.Client.CoreV1().Pods(ns).Get(context.Background(), "planner", metav1.GetOptions{})
		if err != nil || p.Status.Phase != corev1.PodRunning {
			time.Sleep(200 * time.Millisecond)
			return false
		}
		return true
	}, func(*exec.Cmd) {
		grace := int64(1)
		deleted = time.Now()
		if err := stack.Cluster.Client.CoreV1().Pods(ns).Delete(context.Background(), "planner", metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
			t.Error(err)
		}
	})
	took := time.Since(deleted)
	if r.code != int(fail.NotReady) || !strings.Contains(r.stdout, "Pod "+ns+"/planner") || !strings.Contains(r.stdout, "rerun the release") {
		t.Fatalf("release whose Pod was deleted during the wait: exit %d, want %d:\n%s", r.code, fail.NotReady, r.stdout)
	}
	if took > 20*time.Second {
		t.Errorf("the wait ended %s after the deletion", took)
	}
	t.Logf("wait ended %.1fs after the Pod's deletion", took.Seconds())
}

// TestConcurrentRollbacks: two rollbacks of one namespace at once are
// serialized by the release lock: one waits for the other, both succeed,
// and each records its own revision.
func TestConcurrentRollbacks(t *testing.T) {
	t.Parallel()
	const ns = "history-two-rollbacks"
	if r := idopipe(t, nil, releaseArgs(ns)...); r.code != 0 {
		t.Fatalf("first release:\n%s", r)
	}
	if r := idopipe(t, nil, releaseWith(ns, fixtureWith(t, ns, nil, extraConfigMap), "--version", "0.4.1")...); r.code != 0 {
		t.Fatalf("second release:\n%s", r)
	}
	type run struct {
		out  string
		code int
	}
	// Both start while another holder has the lock, so both wait; when it
	// lets go, one takes the lock and the other waits on for it (without
	// the held lock, a busy machine may finish one before the other
	// starts, and nothing would show the serialization).
	release := holdReleaseLock(t, ns)
	done := make(chan run, 2)
	for _, rev := range []string{"1", "2"} {
		go func() {
			cmd := command(t, rollbackArgs(ns, rev)...)
			out, _ := cmd.CombinedOutput()
			done <- run{string(out), cmd.ProcessState.ExitCode()}
		}()
	}
	time.Sleep(3 * time.Second)
	release()
	waited := 0
	for range 2 {
		r := <-done
		assertNoToken(t, "output", r.out)
		if r.code != 0 {
			t.Errorf("rollback: exit %d\n%s", r.code, r.out)
		}
		if strings.Contains(r.out, "waiting for the release lock of namespace "+ns) {
			waited++
		}
	}
	if waited != 2 {
		t.Errorf("%d rollbacks said they waited for the lock, want both", waited)
	}
	// Whichever ran second ran on what the first left: the newest revision
	// is the deployed one, and the planner runs its digest. (A rollback to
	// the revision deployed already changes nothing and records nothing.)
	revs := history(t, ns)
	b, _ := json.Marshal(revs)
	if len(revs) < 3 || revs[0].Status != "deployed" || !strings.HasPrefix(revs[0].Description, "rollback to") {
		t.Fatalf("history after two rollbacks: %s", b)
	}
	for _, r := range revs[1:] {
		if r.Status == "deployed" || r.Status == "pending" {
			t.Errorf("revision %d %s beside the deployed %d: %s", r.Revision, r.Status, revs[0].Revision, b)
		}
	}
	if id := podImageID(t, ns, "planner"); !strings.Contains(id, revs[0].Images[0].Digest) {
		t.Errorf("the planner runs %s, the deployed revision %d is %s", id, revs[0].Revision, revs[0].Images[0].Digest)
	}
}

// holdReleaseLock makes "e2e-holder" hold the release Lease of ns (as a
// release on another machine would) until the returned func lets it go.
func holdReleaseLock(t *testing.T, ns string) func() {
	t.Helper()
	ctx := context.Background()
	leases := stack.Cluster.Client.CoordinationV1().Leases(ns)
	holder, now, secs := "e2e-holder", metav1.NewMicroTime(time.Now()), int32(300)
	l, err := leases.Get(ctx, cluster.LockName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: cluster.LockName, Namespace: ns}}
	} else if err != nil {
		t.Fatal(err)
	}
	l.Spec.HolderIdentity, l.Spec.AcquireTime, l.Spec.RenewTime, l.Spec.LeaseDurationSeconds = &holder, &now, &now, &secs
	if l.ResourceVersion == "" {
		_, err = leases.Create(ctx, l, metav1.CreateOptions{})
	} else {
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := leases.Delete(ctx, cluster.LockName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("let go of the lock: %v", err)
		}
	}
}
