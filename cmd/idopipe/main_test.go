package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/idopipe/idopipe/internal/testenv"
)

// The end-to-end tests run the idopipe binary as a user would, against the
// real local stack (buildkitd, TLS+htpasswd registry, a one-node cluster
// whose kubelet really pulls and runs the Pods), started once for the
// package.
var (
	stack    *testenv.Stack
	binary   string // the idopipe binary under test
	source   string // planner-shaped build context
	busybox  string // OCI layout of the fixture's base image
	fixtures string // ../shared/fixtures/ido
)

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		code = 1
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "idopipe-e2e-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "idopipe")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		return 1, fmt.Errorf("build idopipe: %v\n%s", err, out)
	}
	if fixtures, err = testenv.Fixtures(); err != nil {
		return 1, err
	}
	source = filepath.Join(dir, "source")
	if err := testenv.PlannerFixture(ctx, source); err != nil {
		return 1, err
	}
	busybox = filepath.Join(dir, "busybox")
	if _, err := testenv.BusyboxLayout(busybox); err != nil {
		return 1, err
	}
	start := time.Now()
	stack, err = testenv.Start(ctx, "", testenv.All)
	if err != nil {
		return 1, err
	}
	defer stack.Stop()
	fmt.Fprintf(os.Stderr, "e2e: stack up in %.1fs\n", time.Since(start).Seconds())
	return m.Run(), nil
}

// result is one run of the binary.
type result struct {
	stdout, stderr string
	code           int
	args           []string
}

func (r result) String() string {
	return fmt.Sprintf("idopipe %s\nexit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// idopipe runs the binary with the stack's environment plus env (KEY=VALUE;
// an empty value removes the key), and checks that the token appears in no
// argument and no output.
func idopipe(t *testing.T, env []string, args ...string) result {
	t.Helper()
	r := idopipeRaw(t, env, args...)
	assertNoToken(t, "stdout", r.stdout)
	assertNoToken(t, "stderr", r.stderr)
	return r
}

// idopipeRaw is idopipe without the output checks, for output that must
// carry the token's ::add-mask:: line.
func idopipeRaw(t *testing.T, env []string, args ...string) result {
	t.Helper()
	sweepNamespaces(t)
	defer sweepNamespaces(t)
	for i, a := range args {
		if (a == "-n" || a == "--namespace") && i+1 < len(args) {
			cleanupNamespace(t, args[i+1])
		}
	}
	for _, kv := range env {
		if ns, ok := strings.CutPrefix(kv, "IDOPIPE_NAMESPACE="); ok && ns != "" {
			cleanupNamespace(t, ns)
		}
	}
	cmd := exec.Command(binary, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = mergeEnv(append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, stack.Env()...), env)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), args: args}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run idopipe: %v", err)
	}
	assertNoToken(t, "argv", strings.Join(args, " "))
	return r
}

// startProxy puts a proxy with inject in front of the stack's registry,
// makes the node trust it (its Pods pull through it too) and closes it
// when the test ends.
func startProxy(t *testing.T, inject testenv.Inject) *testenv.Proxy {
	t.Helper()
	proxy, err := stack.Registry.StartProxy(t.TempDir(), inject)
	if err != nil {
		t.Fatal(err)
	}
	if err := stack.Cluster.Node.Trust(proxy.Host, proxy.CAFile); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	return proxy
}

// testFinalizer holds a namespace Terminating until deleteNamespace
// removes it.
const testFinalizer = "idopipe.test/hold"

// sweep remembers the namespaces seen while the current top-level test
// runs the binary, so that the first run of the next test deletes what
// this one left however it named them (config files, action inputs),
// while namespaces a test prepares before its first run stay.
var sweep struct {
	sync.Mutex
	top  string
	seen map[string]bool
}

func sweepNamespaces(t *testing.T) {
	top, _, _ := strings.Cut(t.Name(), "/")
	sweep.Lock()
	defer sweep.Unlock()
	if top != sweep.top {
		for ns := range sweep.seen {
			deleteNamespace(t, ns)
		}
		sweep.top, sweep.seen = top, nil
		return
	}
	list, err := stack.Cluster.Client.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return
	}
	if sweep.seen == nil {
		sweep.seen = map[string]bool{}
	}
	for _, n := range list.Items {
		if n.Name != "default" && !strings.HasPrefix(n.Name, "kube-") {
			sweep.seen[n.Name] = true
		}
	}
}

// cleaned are the namespaces whose deletion a test has registered.
var cleaned sync.Map

// cleanupNamespace deletes ns when the test ends and waits until it is
// gone. The real node has 2 CPUs and the upstream Pods request 1.5 of
// them, so a release's Pods must be gone before the next test's can be
// scheduled.
func cleanupNamespace(t *testing.T, ns string) {
	key := t.Name() + "\x00" + ns
	if _, seen := cleaned.LoadOrStore(key, true); seen {
		return
	}
	t.Cleanup(func() {
		defer cleaned.Delete(key)
		deleteNamespace(t, ns)
	})
}

// deleteNamespace deletes ns and waits (at most 2 minutes) until the
// namespace controller has removed it and everything in it.
func deleteNamespace(t *testing.T, ns string) {
	ctx := context.Background()
	kube := stack.Cluster.Client
	grace := int64(1)
	// Short grace for the Pods: the namespace controller would give each
	// its own (30 s by default).
	if pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			_ = kube.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
		}
	}
	err := kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Errorf("delete namespace %s: %v", ns, err)
		return
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		if err == nil && slices.Contains(n.Finalizers, testFinalizer) {
			// A test held the namespace Terminating: let it go.
			n.Finalizers = slices.DeleteFunc(n.Finalizers, func(f string) bool { return f == testFinalizer })
			_, _ = kube.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{})
		}
		if time.Now().After(deadline) {
			t.Errorf("namespace %s not gone 2 minutes after its deletion", ns)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func mergeEnv(base, over []string) []string {
	m := map[string]string{}
	var order []string
	for _, kv := range append(base, over...) {
		k, v, _ := strings.Cut(kv, "=")
		if _, seen := m[k]; !seen {
			order = append(order, k)
		}
		m[k] = v
	}
	var out []string
	for _, k := range order {
		if m[k] != "" {
			out = append(out, k+"="+m[k])
		}
	}
	return out
}

func assertNoToken(t *testing.T, where, text string) {
	t.Helper()
	if tok := stack.Registry.Password; strings.Contains(text, tok) {
		t.Errorf("the registry token leaked into %s", where)
	}
}

// releaseArgs is a release of the fixture into namespace ns.
func releaseArgs(ns string, extra ...string) []string {
	args := []string{
		"release",
		"--source", source,
		"--build-context", "golang:1.24.6=oci-layout://" + busybox,
		"--registry", stack.Registry.Host, "--registry-ca", stack.Registry.CAFile,
		"--owner", "IDO-Test",
		"--manifest", filepath.Join(fixtures, "manifest-0.4.0.yaml"),
		"--crds", filepath.Join(fixtures, "intents_crds_v1alpha1.yaml"),
		"-n", ns, "--progress", "plain", "--timeout", "60s",
	}
	return append(args, extra...)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// releaseWith is releaseArgs with manifest in place of the upstream one.
func releaseWith(ns, manifest string, extra ...string) []string {
	args := releaseArgs(ns, extra...)
	for i := range args {
		if args[i] == "--manifest" {
			args[i+1] = manifest
			break
		}
	}
	return args
}

func getenv(k string) string { return os.Getenv(k) }

func runtimeFromUnstructured(obj map[string]any, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(obj, into)
}

// command is the binary with args and the stack's environment, not started.
func command(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	sweepNamespaces(t)
	for i, a := range args {
		if (a == "-n" || a == "--namespace") && i+1 < len(args) {
			cleanupNamespace(t, args[i+1])
		}
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = mergeEnv([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, stack.Env())
	return cmd
}
