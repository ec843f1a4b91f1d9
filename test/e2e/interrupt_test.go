package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/idopipe/idopipe/pkg/fail"
)

// slowSource is the fixture's build context with a build step that runs
// for a minute, so that a test can act while BuildKit is busy.
func slowSource(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"Dockerfile", "planner"} {
		b, err := os.ReadFile(filepath.Join(source, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "Dockerfile" {
			b = []byte(strings.Replace(string(b), "WORKDIR /app\n", "WORKDIR /app\nRUN busybox sleep 60\n", 1))
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestInterruptEachStage sends SIGINT while the release is in its build,
// push and verify-pull stages (apply: TestInterruptApply, wait:
// TestInterrupt). Each run must exit 130 naming the stage and what was done;
// the interrupted push leaves no tag; and a rerun converges to a deployed
// release.
func TestInterruptEachStage(t *testing.T) {
	t.Parallel()
	// Requests to the registry through this proxy hang for 3 s each while
	// slow holds "PATCH", "PUT" or "GET" (blob uploads, blob reads).
	var slow atomic.Value
	slow.Store("")
	var seen atomic.Int64
	proxy := startProxy(t, func(r *http.Request) (int, string, bool) {
		if strings.Contains(r.URL.Path, "/blobs/") && r.Method == slow.Load().(string) {
			seen.Add(1)
			time.Sleep(3 * time.Second)
		}
		return 0, "", false
	})
	cases := []struct {
		stage string
		owner string
		args  func(base []string) []string
		slow  string
		ready string // output that shows the stage is under way
		done  string
	}{
		{stage: "build", owner: "int-build", args: func(a []string) []string { return withArg(a, "--source", slowSource(t)) },
			ready: "RUN busybox sleep 60", done: "validate"},
		{stage: "push", owner: "int-push", slow: "PATCH", ready: "==> push", done: "validate, build, checks"},
		{stage: "verify-pull", owner: "int-verify", slow: "GET", ready: "==> verify-pull", done: "validate, build, checks, push"},
	}
	for _, tc := range cases {
		t.Run(tc.stage, func(t *testing.T) {
			ns := "interrupt-" + tc.stage
			args := releaseArgs(ns, "--registry", proxy.Host, "--registry-ca", proxy.CAFile, "--owner", tc.owner)
			if tc.args != nil {
				args = tc.args(args)
			}
			slow.Store(tc.slow)
			seen.Store(0)
			r := interrupt(t, args, func(out string) bool {
				return strings.Contains(out, tc.ready) && (tc.slow == "" || seen.Load() > 0)
			})
			slow.Store("")
			want := fmt.Sprintf("interrupted during stage %s (done: %s)", tc.stage, tc.done)
			if r.code != int(fail.Interrupted) || !strings.Contains(r.stdout, want) {
				t.Fatalf("exit %d, want %d and %q:\n%s", r.code, fail.Interrupted, want, r.stdout)
			}
			if tc.stage == "push" {
				// The manifest goes last: no tag points at a partial image.
				tag := proxy.Host + "/" + tc.owner + "/planner:0.4.0"
				if v := idopipe(t, nil, "verify-pull", "--registry-ca", proxy.CAFile, tag); v.code != int(fail.NotFound) {
					t.Errorf("after an interrupted push the tag exists:\n%s", v)
				}
			}
			rerun := args
			if tc.stage == "build" {
				rerun = withArg(args, "--source", source)
			}
			again := idopipe(t, nil, rerun...)
			if again.code != 0 || !strings.Contains(again.stdout, "2/2 Pods Ready") {
				t.Fatalf("rerun after the interrupt:\n%s", again)
			}
		})
	}
}

// TestInterruptApply sends SIGINT in the middle of the apply stage: after
// a new ConfigMap was created, while the planner Pod is being recreated
// (a finalizer holds its deletion). The run exits 130 naming the stage;
// the inventory records the ConfigMap it created, so that a later release
// without it prunes it; the rerun converges.
func TestInterruptApply(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ns = "interrupt-apply"
	if r := idopipe(t, nil, releaseArgs(ns)...); r.code != 0 {
		t.Fatalf("first release:\n%s", r)
	}
	holdPlanner(t, ns, true)
	// A new ConfigMap (applied before Pods), and a Pod spec change that
	// only a recreation can make.
	changed := fixtureWith(t, ns, recreatePlanner, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: added-before-interrupt}\ndata: {a: b}\n")
	args := releaseWith(ns, changed)
	r := interrupt(t, args, func(out string) bool { return strings.Contains(out, "recreating Pod/"+ns+"/planner") })
	want := "interrupted during stage apply (done: validate, build, checks, push, verify-pull, secret)"
	if r.code != int(fail.Interrupted) || !strings.Contains(r.stdout, want) {
		t.Fatalf("exit %d, want %d and %q:\n%s", r.code, fail.Interrupted, want, r.stdout)
	}
	inv, err := stack.Cluster.Client.CoreV1().ConfigMaps(ns).Get(ctx, "idopipe-inventory", metav1.GetOptions{})
	if err != nil || !strings.Contains(fmt.Sprint(inv.Data), "added-before-interrupt") {
		t.Errorf("the inventory lacks the ConfigMap the interrupted apply created (%v): %v", err, inv.Data)
	}
	holdPlanner(t, ns, false)
	if again := idopipe(t, nil, args...); again.code != 0 || !strings.Contains(again.stdout, "2/2 Pods Ready") {
		t.Fatalf("rerun after the interrupt:\n%s", again)
	}
	// Back to the fixture manifest: the ConfigMap is pruned.
	back := idopipe(t, nil, releaseArgs(ns)...)
	if back.code != 0 || !strings.Contains(back.stdout, "ConfigMap/"+ns+"/added-before-interrupt pruned") {
		t.Errorf("release without the ConfigMap:\n%s", back)
	}
}

// recreatePlanner changes the upstream planner Pod's spec (fixtureWith)
// so that applying it recreates the Pod.
var recreatePlanner = map[string]string{"  serviceAccountName: planner-service-account\n": "  serviceAccountName: planner-service-account\n  hostname: held\n"}

// holdPlanner puts a finalizer on the planner Pod in ns (hold) or takes it
// away: while held, a deletion waits, so a recreation stays in the apply.
func holdPlanner(t *testing.T, ns string, hold bool) {
	t.Helper()
	finalizers := "null"
	if hold {
		finalizers = `["idopipe.test/hold"]`
	}
	patch := []byte(`{"metadata":{"finalizers":` + finalizers + `}}`)
	if _, err := stack.Cluster.Client.CoreV1().Pods(ns).Patch(context.Background(), "planner", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestFailedCheckCancelsBuild: a registry check that fails alongside a
// long build (GHCR's 403 for a token without write:packages, injected by
// a proxy) stops the build rather than waiting a minute for it.
func TestFailedCheckCancelsBuild(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}) // closed once the long step runs
	proxy := startProxy(t, func(r *http.Request) (int, string, bool) {
		if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/blobs/uploads/") {
			select { // the check fails only once the build's long step runs
			case <-started:
			case <-time.After(90 * time.Second):
			}
			return http.StatusForbidden, `{"errors":[{"code":"DENIED","message":"permission_denied: write_package"}]}`, true
		}
		return 0, "", false
	})
	args := withArg(releaseArgs("check-cancels", "--registry", proxy.Host, "--registry-ca", proxy.CAFile), "--source", slowSource(t))
	release := sync.OnceFunc(func() { close(started) })
	defer release()
	start := time.Now()
	r := runUntil(t, args, func(out string) bool { return strings.Contains(out, "RUN busybox sleep 60") }, func(*exec.Cmd) { release() })
	t.Logf("release whose check fails during a 60 s build step: %s", time.Since(start).Round(time.Millisecond))
	if r.code != int(fail.Credentials) || !strings.Contains(r.stdout, "Manage Actions access") || strings.Contains(r.stdout, "==> push") {
		t.Fatalf("release:\n%s", r)
	}
	// Not a timing assertion: a build step that ran to its end prints
	// "#N DONE".
	m := regexp.MustCompile(`#(\d+) \[[^\]]*\] RUN busybox sleep 60`).FindStringSubmatch(r.stdout)
	if m == nil || strings.Contains(r.stdout, "#"+m[1]+" DONE") {
		t.Errorf("the long build step did not start, or ran to its end:\n%s", r)
	}
}
