package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/idopipe/idopipe/internal/testenv"
)

// ---- The stack and the binary, set up once for the package.

// mainPackage is the command under test, built once by TestMain.
const mainPackage = "github.com/idopipe/idopipe/cmd/idopipe"

// The local stack, the binary and the fixtures, shared by every test.
var (
	stack    *testenv.Stack
	binary   string // the idopipe binary under test
	source   string // planner-shaped build context
	busybox  string // OCI layout of the fixture's base image
	workDir  string // the package's scratch directory
	fixtures string // testdata/ido: idopipe's own IDO-shaped manifest and CRDs
)

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run()) // go test -list: names only, no stack
	}
	if testing.Short() {
		fmt.Fprintln(os.Stderr, "e2e: every test here runs the binary against the local stack: skipped with -short")
		os.Exit(0)
	}
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
	workDir = dir
	// Built as the release binaries and the action's install step build
	// it (static, -trimpath, -s -w): the action tests' build from source then
	// finds every package in the Go build cache.
	// It builds while the fixtures are written and the stack starts, into
	// the checkout's build cache, where an unchanged binary is not linked
	// again (8 CPU-s).
	cache, err := testenv.BuildCache()
	if err != nil {
		return 1, err
	}
	binary = filepath.Join(cache, "idopipe")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", binary, mainPackage)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	var buildOut bytes.Buffer
	build.Stdout, build.Stderr = &buildOut, &buildOut
	if err := build.Start(); err != nil {
		return 1, fmt.Errorf("build idopipe: %w", err)
	}
	built := false
	defer func() {
		if !built {
			_ = build.Process.Kill()
			_ = build.Wait()
		}
	}()
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
	built = true
	if err := build.Wait(); err != nil {
		return 1, fmt.Errorf("build idopipe: %v\n%s", err, buildOut.Bytes())
	}
	return m.Run(), nil
}

// ---- Running the binary.

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
	var given []string // a token of the test's own registry
	for _, kv := range env {
		if tok, ok := strings.CutPrefix(kv, "GITHUB_TOKEN="); ok {
			given = append(given, tok)
		}
	}
	assertNoToken(t, "stdout", r.stdout, given...)
	assertNoToken(t, "stderr", r.stderr, given...)
	return r
}

// idopipeRaw is idopipe without the output checks, for output that must
// carry the token's ::add-mask:: line.
func idopipeRaw(t *testing.T, env []string, args ...string) result {
	t.Helper()
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

// command is the binary with args and the stack's environment, not started.
func command(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	for i, a := range args {
		if (a == "-n" || a == "--namespace") && i+1 < len(args) {
			cleanupNamespace(t, args[i+1])
		}
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = mergeEnv([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, stack.Env())
	return cmd
}

// runUntil starts idopipe with args and, once ready says so (given the
// output so far), calls act; it returns the finished run. A run that ends
// before it is ready is returned as it is.
func runUntil(t *testing.T, args []string, ready func(out string) bool, act func(*exec.Cmd)) result {
	t.Helper()
	cmd := command(t, args...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.After(90 * time.Second)
poll:
	for !ready(out.String()) {
		select {
		case <-exited:
			break poll
		case <-deadline:
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("never ready:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case <-exited:
	default:
		act(cmd)
		<-exited
	}
	r := result{stdout: out.String(), code: cmd.ProcessState.ExitCode(), args: args}
	assertNoToken(t, "output", r.stdout)
	return r
}

// interrupt is runUntil sending SIGINT.
func interrupt(t *testing.T, args []string, ready func(out string) bool) result {
	t.Helper()
	return runUntil(t, args, ready, func(cmd *exec.Cmd) { _ = cmd.Process.Signal(syscall.SIGINT) })
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
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

func getenv(k string) string { return os.Getenv(k) }

// ---- Namespaces: each test has its own, deleted when it ends. The
// end-to-end tests run in parallel (see doc.go), so a test never shares a
// namespace, a registry repository or a cluster-scoped object with
// another.

// testFinalizer holds a namespace Terminating until deleteNamespace
// removes it.
const testFinalizer = "idopipe.test/hold"

// cleaned are the namespaces whose deletion a test has registered.
var cleaned sync.Map

// cleanupNamespace deletes ns (and the cluster-scoped objects its release
// wrote) when the test ends, without waiting for the namespace controller:
// no later test uses the name, and the fixture's Pods request little
// enough that a Terminating namespace takes no room another test needs.
func cleanupNamespace(t *testing.T, ns string) {
	if len(validation.IsDNS1123Label(ns)) > 0 {
		return // a bad-input test's name that no run can create
	}
	key := t.Name() + "\x00" + ns
	if _, seen := cleaned.LoadOrStore(key, true); seen {
		return
	}
	t.Cleanup(func() {
		defer cleaned.Delete(key)
		startDeleteNamespace(t, ns)
	})
}

// startDeleteNamespace deletes ns, its Pods with a short grace, and the
// cluster-scoped objects of the fixture copy made for it, and returns
// without waiting.
func startDeleteNamespace(t *testing.T, ns string) {
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
	_ = kube.RbacV1().ClusterRoleBindings().Delete(ctx, clusterName("planner-role-binding", ns), metav1.DeleteOptions{})
	_ = kube.RbacV1().ClusterRoles().Delete(ctx, clusterName("planner-role", ns), metav1.DeleteOptions{})
	if err := kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete namespace %s: %v", ns, err)
	}
	// A test may have held the namespace Terminating: let it go.
	if n, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil && slices.Contains(n.Finalizers, testFinalizer) {
		n.Finalizers = slices.DeleteFunc(n.Finalizers, func(f string) bool { return f == testFinalizer })
		_, _ = kube.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{})
	}
}

// deleteNamespace deletes ns and waits (at most 2 minutes) until the
// namespace controller has removed it and everything in it, for the tests
// that check what is left.
func deleteNamespace(t *testing.T, ns string) {
	ctx := context.Background()
	kube := stack.Cluster.Client
	startDeleteNamespace(t, ns)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		if err == nil && slices.Contains(n.Finalizers, testFinalizer) {
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

// ---- Arguments and manifests.

// releaseArgs is a release of the fixture into namespace ns, under the
// registry owner ownerOf(ns) and with the fixture's cluster-scoped objects
// named for ns (manifestFor), so that tests in parallel share nothing.
func releaseArgs(ns string, extra ...string) []string {
	args := []string{
		"release",
		"--source", source,
		"--build-context", "golang:1.24.6=oci-layout://" + busybox,
		"--registry", stack.Registry.Host, "--registry-ca", stack.Registry.CAFile,
		"--owner", ownerOf(ns),
		"--manifest", manifestFor(ns),
		"--crds", filepath.Join(fixtures, "intents_crds_v1alpha1.yaml"),
		"-n", ns, "--progress", "plain", "--timeout", "60s",
	}
	return append(args, extra...)
}

// ownerOf is the registry owner of the releases into ns: IDO-Test-<ns>
// (idopipe lowercases it: repoOf).
func ownerOf(ns string) string { return "IDO-Test-" + ns }

// repoOf is the planner's repository of the releases into ns, with the
// registry host.
func repoOf(ns string) string {
	return stack.Registry.Host + "/" + strings.ToLower(ownerOf(ns)) + "/planner"
}

// clusterName is the name the fixture copy for ns gives a cluster-scoped
// object (planner-role, planner-role-binding).
func clusterName(name, ns string) string { return name + "-" + ns }

// manifests caches the fixture copies made by manifestFor.
var manifests sync.Map

// manifestFor is the fixture manifest with its ClusterRole and
// ClusterRoleBinding named for ns (clusterName), written once per
// namespace: releases into different namespaces then never write the
// same cluster-scoped object.
func manifestFor(ns string) string {
	if p, ok := manifests.Load(ns); ok {
		return p.(string)
	}
	b, err := os.ReadFile(filepath.Join(fixtures, "manifest-0.4.0.yaml"))
	if err != nil {
		panic(err)
	}
	s := strings.ReplaceAll(string(b), "name: planner-role-binding\n", "name: "+clusterName("planner-role-binding", ns)+"\n")
	s = strings.ReplaceAll(s, "name: planner-role\n", "name: "+clusterName("planner-role", ns)+"\n")
	p := filepath.Join(workDir, "manifest-"+ns+".yaml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		panic(err)
	}
	manifests.Store(ns, p)
	return p
}

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

// withArg replaces the value of flag in args.
func withArg(args []string, flag, value string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if out[i] == flag {
			out[i+1] = value
			return out
		}
	}
	return append(out, flag, value)
}

func registryArgs(owner string) []string {
	return []string{"--registry", stack.Registry.Host, "--registry-ca", stack.Registry.CAFile, "--owner", owner}
}

// fixtureWith writes manifestFor(ns) with each old→new replacement made
// (each old must occur exactly once) plus extra documents.
func fixtureWith(t *testing.T, ns string, replace map[string]string, extra ...string) string {
	t.Helper()
	b, err := os.ReadFile(manifestFor(ns))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for old, repl := range replace {
		if strings.Count(s, old) != 1 {
			t.Fatalf("%q occurs %d times in the fixture manifest", old, strings.Count(s, old))
		}
		s = strings.Replace(s, old, repl, 1)
	}
	for _, e := range extra {
		s += "\n---\n" + e
	}
	p := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ---- Images and registries.

// buildImage builds the planner fixture into a fresh OCI layout and returns
// the layout and the digest.
func buildImage(t *testing.T, version string) (string, string) {
	t.Helper()
	layout := filepath.Join(t.TempDir(), "oci")
	b := idopipe(t, nil, "build", "--source", source, "--build-context", "golang:1.24.6=oci-layout://"+busybox,
		"--oci-layout", layout, "--version", version, "--progress", "quiet", "-o", "json")
	if b.code != 0 {
		t.Fatalf("build:\n%s", b)
	}
	var built struct {
		Result struct{ Digest string } `json:"result"`
	}
	lines := strings.Split(strings.TrimSpace(b.stdout), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &built); err != nil || built.Result.Digest == "" {
		t.Fatalf("build result: %v\n%s", err, b)
	}
	return layout, built.Result.Digest
}

// randomLayout writes a random image of n layers of size bytes each as an
// OCI layout and returns it with the image's digest and layer count.
func randomLayout(t *testing.T, size int64, n int) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "oci")
	d, err := testenv.RandomLayout(dir, size, int64(n))
	if err != nil {
		t.Fatal(err)
	}
	return dir, d
}

// pushedImage builds, pushes and verifies the fixture (a release's stages
// up to verify-pull, under the owner of a namespace of the test's own) and
// returns the pushed reference with its digest. Nothing is deployed: the
// tests deploy it themselves.
func pushedImage(t *testing.T) string {
	t.Helper()
	r := idopipe(t, nil, releaseArgs(testNS(t, "setup"), "--to", "verify-pull", "-o", "json")...)
	if r.code != 0 {
		t.Fatalf("release:\n%s", r)
	}
	return parseRelease(t, r).Result.Ref
}

// testNS is a namespace name of the test's own: prefix and the test's
// name, lowercased, at most 63 characters.
func testNS(t *testing.T, prefix string) string {
	n := strings.ToLower(prefix + "-" + t.Name())
	n = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, n)
	if len(n) > 50 {
		n = n[:50]
	}
	return strings.Trim(n, "-")
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

// ---- Reading what a run printed and what it left in the cluster.

// releaseResult is the final JSON object of `idopipe release -o json`.
type releaseResult struct {
	Kind   string `json:"kind"`
	OK     bool   `json:"ok"`
	Result struct {
		Image   string `json:"image"`
		Digest  string `json:"digest"`
		Ref     string `json:"ref"`
		Objects []struct {
			Ref    string `json:"Ref"`
			Status string `json:"Status"`
		} `json:"objects"`
		Pods []struct {
			Name  string `json:"name"`
			Ready bool   `json:"ready"`
		} `json:"pods"`
	} `json:"result"`
}

func parseRelease(t *testing.T, r result) releaseResult {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	for _, l := range lines[:len(lines)-1] {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("stdout line is not JSON: %q: %v", l, err)
		}
	}
	var res releaseResult
	if err := lastJSON(r, &res); err != nil || res.Kind != "result" {
		t.Fatalf("last stdout line is not the result object: %v\n%s", err, r)
	}
	return res
}

// lastJSON decodes the final line of stdout (the result object) into v.
func lastJSON(r result, v any) error {
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	return json.Unmarshal([]byte(lines[len(lines)-1]), v)
}

// jsonField decodes result.<field> of the final JSON object into v.
func jsonField(r result, field string, v any) error {
	var obj struct {
		Result map[string]json.RawMessage `json:"result"`
	}
	if err := lastJSON(r, &obj); err != nil {
		return err
	}
	return json.Unmarshal(obj.Result[field], v)
}

// lastLine is the last line of s, the error on stderr.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// resourceVersions maps every namespaced object in ns (of the kinds a
// release writes) to its resourceVersion.
func resourceVersions(t *testing.T, ctx context.Context, ns string) map[string]string {
	t.Helper()
	kube := stack.Cluster.Client
	out := map[string]string{}
	cms, _ := kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	for _, o := range cms.Items {
		out["ConfigMap/"+o.Name] = o.ResourceVersion
	}
	sas, _ := kube.CoreV1().ServiceAccounts(ns).List(ctx, metav1.ListOptions{})
	for _, o := range sas.Items {
		out["ServiceAccount/"+o.Name] = o.ResourceVersion
	}
	svcs, _ := kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	for _, o := range svcs.Items {
		out["Service/"+o.Name] = o.ResourceVersion
	}
	pods, _ := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	for _, o := range pods.Items {
		out["Pod/"+o.Name] = o.ResourceVersion
	}
	secs, _ := kube.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	for _, o := range secs.Items {
		out["Secret/"+o.Name] = o.ResourceVersion
	}
	if len(out) < 8 {
		t.Fatalf("expected the release's objects in %s, found %v", ns, out)
	}
	return out
}

func runtimeFromUnstructured(obj map[string]any, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(obj, into)
}

// ---- Assertions and small conversions.

func assertNoToken(t *testing.T, where, text string, more ...string) {
	t.Helper()
	for _, tok := range append([]string{stack.Registry.Password}, more...) {
		if tok != "" && strings.Contains(text, tok) {
			t.Errorf("the registry token leaked into %s", where)
		}
	}
}

// ownRegistry starts a registry with GHCR's token flow for t alone,
// stopped when t ends, and returns it with the environment that gives
// idopipe its token (GITHUB_ACTOR, GITHUB_TOKEN): for a test that changes
// what the registry does for every client (its tokens' lifetime, faults in
// front of it), so that it need not run alone.
func ownRegistry(t *testing.T) (*testenv.Registry, []string) {
	t.Helper()
	s, err := testenv.Start(context.Background(), "", testenv.Parts{Registry: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s.Registry, []string{"GITHUB_ACTOR=" + s.Registry.Username, "GITHUB_TOKEN=" + s.Registry.Password}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func itoa(i int) string { return strconv.Itoa(i) }

// serviceAccountKubeconfig writes a kubeconfig for the stack's API server
// that authenticates as ServiceAccount ns/sa with a token of its own: the
// identity of a CI job given exactly the permissions a test grants sa.
func serviceAccountKubeconfig(t *testing.T, ns, sa string) string {
	t.Helper()
	tok, err := stack.Cluster.Client.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["stack"] = &clientcmdapi.Cluster{Server: stack.Cluster.Config.Host, CertificateAuthorityData: stack.Cluster.Config.CAData}
	cfg.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	cfg.Contexts[sa] = &clientcmdapi.Context{Cluster: "stack", AuthInfo: sa}
	cfg.CurrentContext = sa
	if err := clientcmd.WriteToFile(*cfg, kc); err != nil {
		t.Fatal(err)
	}
	return kc
}
