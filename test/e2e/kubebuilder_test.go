package e2e

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/fail"
)

// onceImage is a builder image made and pushed once per run of the
// package.
type onceImage struct {
	once sync.Once
	ref  string
	err  error
}

// The privileged and the rootless builder images.
var builderImage, rootlessImage onceImage

// push makes and pushes the image with push the first time it is asked
// for, and fails t when that failed.
func (o *onceImage) push(t *testing.T, what string, push func(context.Context) (string, error)) {
	t.Helper()
	o.once.Do(func() {
		start := time.Now()
		o.ref, o.err = push(context.Background())
		t.Logf("%s %s pushed in %.1fs", what, o.ref, time.Since(start).Seconds())
	})
	if o.err != nil {
		t.Fatal(o.err)
	}
}

// kubeBuilder pushes the builder image to the node's docker.io mirror (as
// moby/buildkit:<pinned>, the default image; once per package run), makes
// namespace ns unless it exists, and runs `buildkit create --kubernetes`
// of builder name there with args (-o json).
func kubeBuilder(t *testing.T, ns, name string, args ...string) result {
	t.Helper()
	builderImage.push(t, "builder image", stack.PushBuilderImage)
	ctx := context.Background()
	if _, err := stack.Cluster.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		if _, err := stack.Cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	r := idopipe(t, nil, append([]string{"buildkit", "create", "--kubernetes", "-n", ns, name, "-o", "json"}, args...)...)
	t.Logf("buildkit create %s/%s: exit %d in %.1fs", ns, name, r.code, time.Since(start).Seconds())
	return r
}

type builderResult struct {
	Result struct {
		Address string   `json:"address"`
		Kind    string   `json:"kind"`
		Ready   int32    `json:"ready"`
		Pods    []string `json:"pods"`
		Applied []struct {
			Ref    string `json:"Ref"`
			Status string `json:"Status"`
		} `json:"applied"`
	} `json:"result"`
}

func parseBuilder(t *testing.T, r result) builderResult {
	t.Helper()
	var b builderResult
	if err := lastJSON(r, &b); err != nil {
		t.Fatalf("create result: %v\n%s", err, r)
	}
	return b
}

// builderLog is the log of the builder's Pod pod.
func builderLog(t *testing.T, ns, pod string) string {
	t.Helper()
	b, err := stack.Cluster.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: "buildkitd"}).DoRaw(context.Background())
	if err != nil {
		t.Fatalf("log of %s/%s: %v", ns, pod, err)
	}
	return string(b)
}

var buildingOn = regexp.MustCompile(`building on kube://\S+, Pod (\S+)`)

// TestKubeBuilder: a builder created in the cluster by server-side apply
// builds a release through the API server (kube://), a second release is a
// cache hit on the same replica, an unchanged create writes nothing and a
// changed one updates the builder in place; rm removes what create wrote.
func TestKubeBuilder(t *testing.T) {
	t.Parallel()
	const ns, name = "kb-builders", "bk"
	r := kubeBuilder(t, ns, name, "--buildkitd-flag", "--debug")
	if r.code != 0 {
		t.Fatalf("create:\n%s", r)
	}
	b := parseBuilder(t, r)
	if b.Result.Address != "kube://"+ns+"/"+name || b.Result.Kind != "Deployment" || b.Result.Ready != 1 || len(b.Result.Pods) != 1 {
		t.Fatalf("builder %+v", b.Result)
	}
	pod := b.Result.Pods[0]
	host := "kube://" + ns + "/" + name

	st := idopipe(t, nil, "buildkit", "status", "--kubernetes", "-n", ns, name, "-o", "json")
	var status struct {
		Result struct {
			Version string   `json:"version"`
			Workers int      `json:"workers"`
			Pods    []string `json:"pods"`
			Connect float64  `json:"connectSeconds"`
		} `json:"result"`
	}
	if err := lastJSON(st, &status); st.code != 0 || err != nil || status.Result.Version == "" || status.Result.Workers < 1 || len(status.Result.Pods) != 1 {
		t.Fatalf("status --kubernetes: %v\n%s", err, st)
	}
	t.Logf("BuildKit %s in %s answered through the API server in %.2fs", status.Result.Version, pod, status.Result.Connect)

	start := time.Now()
	rel := idopipe(t, nil, releaseArgs("kb-release", "--buildkit-host", host, "-o", "json")...)
	t.Logf("release through %s: %.1fs", host, time.Since(start).Seconds())
	if rel.code != 0 {
		t.Fatalf("release:\n%s\nbuilder log:\n%s", rel, builderLog(t, ns, pod))
	}
	m := buildingOn.FindStringSubmatch(rel.stderr)
	if m == nil || m[1] != pod {
		t.Fatalf("the release did not say it built on %s:\n%s", pod, rel.stderr)
	}
	log := builderLog(t, ns, pod)
	// buildkitd --debug logs each solve it runs, and runc's containers for
	// the RUN step: the build ran in the Pod, not on the local daemon.
	if !strings.Contains(log, "session started") || !strings.Contains(log, "planner -version") {
		t.Errorf("the builder's log shows no solve of the release:\n%s", log)
	}
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "found worker") || strings.Contains(l, "level=warning") {
			t.Logf("builder: %s", l)
		}
	}
	out := parseRelease(t, rel)
	assertRunsOnNode(t, context.Background(), "kb-release", out.Result.Ref)

	start = time.Now()
	again := idopipe(t, nil, releaseArgs("kb-release", "--buildkit-host", host, "-o", "json")...)
	t.Logf("second release through %s: %.1fs", host, time.Since(start).Seconds())
	if again.code != 0 {
		t.Fatalf("second release:\n%s", again)
	}
	if m := buildingOn.FindStringSubmatch(again.stderr); m == nil || m[1] != pod {
		t.Errorf("second release not on %s:\n%s", pod, again.stderr)
	}
	if !strings.Contains(again.stderr, "CACHED") || parseRelease(t, again).Result.Digest != out.Result.Digest {
		t.Errorf("second release is not a cache hit of the same image:\n%s", again.stderr)
	}

	// Unchanged: nothing written, the Pod stays.
	r = kubeBuilder(t, ns, name, "--buildkitd-flag", "--debug")
	if r.code != 0 {
		t.Fatalf("create again:\n%s", r)
	}
	for _, a := range parseBuilder(t, r).Result.Applied {
		if a.Status != "unchanged" {
			t.Errorf("an unchanged create wrote %s: %s", a.Ref, a.Status)
		}
	}
	if p := parseBuilder(t, r).Result.Pods; len(p) != 1 || p[0] != pod {
		t.Errorf("an unchanged create replaced the Pod: %v", p)
	}
	// Changed options take effect on a rerun (buildx's create never updates).
	r = kubeBuilder(t, ns, name)
	if r.code != 0 {
		t.Fatalf("create without --debug:\n%s", r)
	}
	nb := parseBuilder(t, r).Result
	if len(nb.Pods) != 1 || nb.Pods[0] == pod {
		t.Errorf("the changed builder kept its old Pod: %v", nb.Pods)
	}
	d, err := stack.Cluster.Client.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil || strings.Contains(strings.Join(d.Spec.Template.Spec.Containers[0].Args, " "), "--debug") {
		t.Errorf("--debug still in the Deployment: %v %v", err, d.Spec.Template.Spec.Containers[0].Args)
	}

	// rm removes what create wrote and leaves a ConfigMap it did not write.
	if _, err := stack.Cluster.Client.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other-config"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rm := idopipe(t, nil, "buildkit", "rm", "--kubernetes", "-n", ns, name)
	if rm.code != 0 || !strings.Contains(rm.stdout, "builder "+host+" removed (2 objects)") {
		t.Fatalf("rm:\n%s", rm)
	}
	if _, err := stack.Cluster.Client.CoreV1().ConfigMaps(ns).Get(context.Background(), "other-config", metav1.GetOptions{}); err != nil {
		t.Errorf("rm removed a ConfigMap create did not write: %v", err)
	}
	if pods, _ := stack.Cluster.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + name}); len(pods.Items) != 0 {
		t.Errorf("builder Pods left after rm: %d", len(pods.Items))
	}
	again = idopipe(t, nil, "buildkit", "rm", "--kubernetes", "-n", ns, name)
	if again.code != int(fail.Usage) || !strings.Contains(again.stderr, "no builder bk in namespace "+ns) {
		t.Errorf("rm of a removed builder:\n%s", again)
	}
}

// sleepySource is a build context whose RUN step sleeps SLEEP seconds.
func sleepySource(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	df := "FROM golang:1.24.6\nARG SLEEP=60\nRUN busybox sleep $SLEEP && echo slept > /slept\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestKubeBuilderPodDeletedMidBuild: the builder Pod deleted while a RUN
// step runs ends the build at once with one line and exit 13 (no hang on
// a dead stream); once the Deployment's new Pod is Ready, a rerun builds.
func TestKubeBuilderPodDeletedMidBuild(t *testing.T) {
	t.Parallel()
	const ns, name = "kb-faults", "bk"
	if r := kubeBuilder(t, ns, name); r.code != 0 {
		t.Fatalf("create:\n%s", r)
	}
	src := sleepySource(t)
	args := []string{"build", "--buildkit-host", "kube://" + ns + "/" + name, "--source", src, "--build-context", "golang:1.24.6=oci-layout://" + busybox,
		"--oci-layout", filepath.Join(t.TempDir(), "oci"), "--version", "1", "--progress", "plain", "--build-arg", "SLEEP=" + fmt.Sprint(60+time.Now().Second())}
	var deleted time.Time
	r := runUntil(t, args, func(out string) bool { return strings.Contains(out, "RUN busybox sleep") }, func(*exec.Cmd) {
		pods, err := stack.Cluster.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + name})
		if err != nil || len(pods.Items) != 1 {
			t.Errorf("builder Pods: %v %v", err, pods)
			return
		}
		time.Sleep(time.Second) // the step runs
		zero := int64(0)
		deleted = time.Now()
		if err := stack.Cluster.Client.CoreV1().Pods(ns).Delete(context.Background(), pods.Items[0].Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Errorf("delete the builder Pod: %v", err)
		}
	})
	took := time.Since(deleted)
	t.Logf("the build ended %.1fs after the Pod's deletion: exit %d", took.Seconds(), r.code)
	last := lastLine(r.stdout)
	if r.code != int(fail.Daemon) || !strings.Contains(last, "the connection to BuildKit was lost") || took > 30*time.Second {
		t.Fatalf("want exit 13 with one line about the lost connection within 30s of the deletion; got exit %d after %s, last line %q:\n%s", r.code, took, last, r.stdout)
	}
	// The Deployment makes a new Pod; create (unchanged) waits until it is Ready.
	if r := kubeBuilder(t, ns, name); r.code != 0 {
		t.Fatalf("create after the deletion:\n%s", r)
	}
	args[len(args)-1] = "SLEEP=1"
	if again := idopipe(t, nil, args...); again.code != 0 {
		t.Fatalf("rerun after the Pod's deletion:\n%s", again)
	}
}

// TestKubeBuilderErrors: no Ready replica, a wrong namespace, a missing
// builder and missing RBAC each stop the build at once with one line and
// the fix; a user with exactly deploy/buildkit/rbac.yaml builds.
func TestKubeBuilderErrors(t *testing.T) {
	t.Parallel()
	const ns = "kb-errors"
	// A builder whose image does not exist never becomes Ready.
	if r := kubeBuilder(t, ns, "broken", "--image", stack.Mirror.Host+"/nope/buildkit:0", "--timeout", "0"); r.code != 0 {
		t.Fatalf("create broken:\n%s", r)
	}
	build := func(env []string, host string) result {
		return idopipe(t, env, "build", "--buildkit-host", host, "--source", source, "--build-context", "golang:1.24.6=oci-layout://"+busybox,
			"--oci-layout", filepath.Join(t.TempDir(), "oci"), "--version", "1", "--progress", "quiet")
	}
	for _, tc := range []struct {
		host string
		code fail.Class
		want string
	}{
		{"kube://" + ns + "/broken", fail.Daemon, "has no Ready replica"},
		{"kube://kb-nowhere/bk", fail.Daemon, "namespace kb-nowhere does not exist"},
		{"kube://" + ns + "/none", fail.Daemon, "no builder none in namespace " + ns},
	} {
		r := build(nil, tc.host)
		if r.code != int(tc.code) || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
			t.Errorf("%s: want exit %d and one line with %q:\n%s", tc.host, tc.code, tc.want, r)
		}
	}

	// A working builder, and a ServiceAccount with exactly the client Role.
	if r := kubeBuilder(t, ns, "bk"); r.code != 0 {
		t.Fatalf("create:\n%s", r)
	}
	kc := roleKubeconfig(t, ns, "kb-client")
	if r := build([]string{"KUBECONFIG=" + kc}, "kube://"+ns+"/bk"); r.code != 0 {
		t.Fatalf("build with only deploy/buildkit/rbac.yaml's Role:\n%s", r)
	}
	// Without pods/exec: one line naming the permission.
	role, err := stack.Cluster.Client.RbacV1().Roles(ns).Get(context.Background(), "buildkit-client", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	role.Rules = role.Rules[:1]
	if _, err := stack.Cluster.Client.RbacV1().Roles(ns).Update(context.Background(), role, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := build([]string{"KUBECONFIG=" + kc}, "kube://"+ns+"/bk")
	if r.code != int(fail.Cluster) || !strings.Contains(r.stderr, "may not create pods/exec") || !strings.Contains(r.stderr, "rbac.yaml") {
		t.Errorf("build without pods/exec:\n%s", r)
	}
	// Without list pods either.
	if err := stack.Cluster.Client.RbacV1().Roles(ns).Delete(context.Background(), "buildkit-client", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r = build([]string{"KUBECONFIG=" + kc}, "kube://"+ns+"/bk")
	if r.code != int(fail.Cluster) || !strings.Contains(r.stderr, "may not list pods") {
		t.Errorf("build without list pods:\n%s", r)
	}
}

// roleKubeconfig is a kubeconfig of ServiceAccount sa in ns bound to
// deploy/buildkit/rbac.yaml's Role (made in ns), and nothing else.
func roleKubeconfig(t *testing.T, ns, sa string) string {
	t.Helper()
	ctx := context.Background()
	kube := stack.Cluster.Client
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "buildkit", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.Role
	if err := json.Unmarshal(j, &role); err != nil {
		t.Fatal(err)
	}
	role.Namespace = ns
	if _, err := kube.RbacV1().Roles(ns).Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: sa},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}}}
	if _, err := kube.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return serviceAccountKubeconfig(t, ns, sa)
}

// TestKubeBuilderSticky: with two replicas, builds of the same image go to
// the same replica (its cache: the second is CACHED), as long as both
// stay Ready.
func TestKubeBuilderSticky(t *testing.T) {
	t.Parallel()
	const ns, name = "kb-sticky", "bk"
	r := kubeBuilder(t, ns, name, "--replicas", "2")
	if r.code != 0 {
		t.Fatalf("create:\n%s", r)
	}
	if b := parseBuilder(t, r); b.Result.Ready != 2 || len(b.Result.Pods) != 2 {
		t.Fatalf("builder %+v", b.Result)
	}
	var on []string
	for i := range 2 {
		b := idopipe(t, nil, "build", "--buildkit-host", "kube://"+ns+"/"+name, "--source", source, "--build-context", "golang:1.24.6=oci-layout://"+busybox,
			"--oci-layout", filepath.Join(t.TempDir(), "oci"), "--version", "1", "--progress", "plain")
		if b.code != 0 {
			t.Fatalf("build %d:\n%s", i+1, b)
		}
		m := buildingOn.FindStringSubmatch(b.stderr)
		if m == nil {
			t.Fatalf("build %d did not say where it built:\n%s", i+1, b.stderr)
		}
		on = append(on, m[1])
		if i == 1 && !strings.Contains(b.stderr, "CACHED") {
			t.Errorf("the second build on %s was not a cache hit:\n%s", m[1], b.stderr)
		}
	}
	if on[0] != on[1] {
		t.Errorf("the same image built on %s, then on %s", on[0], on[1])
	}
}

// TestKubeBuilderVariants: the rootless and the --storage (StatefulSet)
// builders pass the API server's validation (a server-side dry run, nothing
// written); then a rootless builder runs for real on the node, from the
// stack's stand-in for moby/buildkit:<pinned>-rootless (rootlesskit,
// setuid newuidmap/newgidmap, user 1000): its Pod is not privileged, every
// process of its container is uid 1000 on the host, buildkitd runs in a
// user namespace of its own, and a build through kube:// runs its RUN step
// there (the step's /proc/self/uid_map maps root to host uid 1000).
func TestKubeBuilderVariants(t *testing.T) {
	t.Parallel()
	const ns = "kb-variants"
	ctx := context.Background()
	if _, err := stack.Cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--rootless"},
		{"--storage", "5Gi", "--replicas", "2", "--limits", "ephemeral-storage=4Gi"},
	} {
		r := idopipe(t, nil, append([]string{"buildkit", "create", "--kubernetes", "-n", ns, "bk", "--dry-run", "-o", "json"}, args...)...)
		var b builderResult
		if err := lastJSON(r, &b); r.code != 0 || err != nil || len(b.Result.Applied) != 2 {
			t.Errorf("create %v --dry-run: %v\n%s", args, err, r)
		}
	}
	if list, err := stack.Cluster.Client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{}); err != nil || len(list.Items) != 0 {
		t.Errorf("a dry run wrote Deployments: %v %v", err, list)
	}

	// The rootless builder, for real.
	const name = "rootless"
	pushRootlessImage(t)
	r := kubeBuilder(t, ns, name, "--rootless", "--timeout", "2m")
	if r.code != 0 {
		t.Fatalf("create --rootless:\n%s\n%s", r, podsReport(t, ns, name))
	}
	pod := builderPod(t, r)
	p, err := stack.Cluster.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctr := p.Spec.Containers[0]
	if sc := ctr.SecurityContext; ctr.Image != testenv.RootlessBuilderImage || sc == nil || (sc.Privileged != nil && *sc.Privileged) || sc.RunAsUser == nil || *sc.RunAsUser != 1000 {
		t.Fatalf("rootless builder container: image %s, security context %+v", ctr.Image, ctr.SecurityContext)
	}
	procs := containerProcesses(t, p)
	hostUserNS := userNamespace(t, "self")
	var inOwnNS bool
	for _, pr := range procs {
		t.Logf("builder process %d %s: host uid %d, user namespace %s, CapEff %s", pr.pid, pr.comm, pr.uid, pr.userNS, pr.capEff)
		if strings.HasPrefix(pr.comm, "runc:[") {
			// runc's own init of an exec (the readiness probe), caught
			// before it becomes the container's user.
			continue
		}
		if pr.uid != 1000 {
			t.Errorf("process %d (%s) of the rootless builder runs as host uid %d, not 1000", pr.pid, pr.comm, pr.uid)
		}
		if pr.userNS == hostUserNS && strings.Trim(pr.capEff, "0") != "" {
			t.Errorf("process %d (%s) has capabilities %s in the host's user namespace", pr.pid, pr.comm, pr.capEff)
		}
		if pr.comm == "buildkitd" && pr.userNS != hostUserNS {
			inOwnNS = true
		}
	}
	if !inOwnNS {
		t.Errorf("no buildkitd in a user namespace of its own among the builder's processes %+v", procs)
	}

	// A build through kube:// whose RUN step records the user namespace
	// it ran in.
	src := t.TempDir()
	df := "FROM golang:1.24.6\nRUN busybox cat /proc/self/uid_map > /uid_map && busybox id -u > /uid\n"
	if err := os.WriteFile(filepath.Join(src, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "oci")
	b := idopipe(t, nil, "build", "--buildkit-host", "kube://"+ns+"/"+name, "--source", src, "--build-context", "golang:1.24.6=oci-layout://"+busybox,
		"--oci-layout", out, "--version", "1", "--progress", "plain")
	if b.code != 0 {
		t.Fatalf("build on the rootless builder:\n%s\nbuilder log:\n%s", b, builderLog(t, ns, pod))
	}
	if m := buildingOn.FindStringSubmatch(b.stderr); m == nil || m[1] != pod {
		t.Errorf("the build did not say it built on %s:\n%s", pod, b.stderr)
	}
	if !stepRan(b.stderr, "RUN busybox cat /proc/self/uid_map") {
		t.Errorf("the RUN step did not run on the builder:\n%s", b.stderr)
	}
	uidMap := strings.Fields(layoutFile(t, out, "uid_map"))
	uid := strings.TrimSpace(layoutFile(t, out, "uid"))
	t.Logf("the RUN step ran as uid %s with uid_map %v", uid, uidMap)
	// Root in the step is host uid 1000 (rootlesskit's map from
	// /etc/subuid: 0 → 1000, then 1.. → 100000..), not the host's root
	// (0 0 4294967295 in a privileged builder).
	if uid != "0" || len(uidMap) < 3 || uidMap[0] != "0" || uidMap[1] != "1000" || uidMap[2] != "1" {
		t.Errorf("the RUN step's uid %q and uid_map %v: want root mapped to host uid 1000", uid, uidMap)
	}
	if rm := idopipe(t, nil, "buildkit", "rm", "--kubernetes", "-n", ns, name); rm.code != 0 {
		t.Errorf("rm:\n%s", rm)
	}
}

// pushRootlessImage pushes the stand-in for moby/buildkit:<pinned>-rootless
// to the node's docker.io mirror (once per package run).
func pushRootlessImage(t *testing.T) {
	t.Helper()
	rootlessImage.push(t, "rootless builder image", stack.PushRootlessBuilderImage)
}

// podsReport is the state, events and log of builder ns/name's Pods, for
// a failure message.
func podsReport(t *testing.T, ns, name string) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	pods, err := stack.Cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + name})
	if err != nil {
		return err.Error()
	}
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "Pod %s: %s\n", p.Name, p.Status.Phase)
		for _, c := range p.Status.ContainerStatuses {
			fmt.Fprintf(&b, "  %s ready=%v restarts=%d state=%+v last=%+v\n", c.Name, c.Ready, c.RestartCount, c.State, c.LastTerminationState)
		}
		if ev, err := stack.Cluster.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + p.Name}); err == nil {
			for _, e := range ev.Items {
				fmt.Fprintf(&b, "  event %s %s: %s\n", e.Type, e.Reason, e.Message)
			}
		}
		for _, previous := range []bool{true, false} {
			if l, err := stack.Cluster.Client.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: "buildkitd", Previous: previous}).DoRaw(ctx); err == nil {
				fmt.Fprintf(&b, "  log (previous=%v):\n%s\n", previous, l)
			}
		}
	}
	return b.String()
}

// hostProcess is a process on the host, as /proc shows it.
type hostProcess struct {
	pid    int
	comm   string
	uid    int    // real uid on the host
	userNS string // the user namespace, e.g. user:[4026531837]
	capEff string
}

// containerProcesses are the host's processes of p's first container (its
// cgroup path holds the container's id).
func containerProcesses(t *testing.T, p *corev1.Pod) []hostProcess {
	t.Helper()
	if len(p.Status.ContainerStatuses) == 0 {
		t.Fatalf("Pod %s has no container status", p.Name)
	}
	_, id, ok := strings.Cut(p.Status.ContainerStatuses[0].ContainerID, "://")
	if !ok || id == "" {
		t.Fatalf("Pod %s: container id %q", p.Name, p.Status.ContainerStatuses[0].ContainerID)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []hostProcess
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil || !strings.Contains(string(cg), id) {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		pr := hostProcess{pid: pid, uid: -1, userNS: userNamespace(t, e.Name())}
		for _, l := range strings.Split(string(status), "\n") {
			k, v, _ := strings.Cut(l, ":")
			f := strings.Fields(v)
			switch {
			case k == "Name" && len(f) > 0:
				pr.comm = f[0]
			case k == "Uid" && len(f) > 0:
				pr.uid, _ = strconv.Atoi(f[0])
			case k == "CapEff" && len(f) > 0:
				pr.capEff = f[0]
			}
		}
		out = append(out, pr)
	}
	if len(out) == 0 {
		t.Fatalf("no process on the host is in the cgroup of Pod %s's container %s", p.Name, id)
	}
	return out
}

// userNamespace is the user namespace of process pid ("self" for the test).
func userNamespace(t *testing.T, pid string) string {
	t.Helper()
	ns, err := os.Readlink(filepath.Join("/proc", pid, "ns", "user"))
	if err != nil {
		return "gone: " + err.Error()
	}
	return ns
}

// stepRan reports whether the plain progress in out shows the build step
// whose line holds step run rather than taken from the cache.
func stepRan(out, step string) bool {
	id := stepID(out, step)
	return id != "" && strings.Contains(out, id+" DONE") && !strings.Contains(out, id+" CACHED")
}

// stepCached reports whether the plain progress in out shows the build
// step whose line holds step taken from the cache.
func stepCached(out, step string) bool {
	id := stepID(out, step)
	return id != "" && strings.Contains(out, "\n"+id+" CACHED")
}

// stepID is "#N", the plain progress's number of the step whose line
// holds step.
func stepID(out, step string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "#") && strings.Contains(l, step) {
			return strings.Fields(l)[0]
		}
	}
	return ""
}

// layoutFile is the content of file (a path in the image, no leading /)
// in the top layer that has it, of the one image in OCI layout dir.
func layoutFile(t *testing.T, dir, file string) string {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) == 0 {
		t.Fatalf("layout %s: %v %+v", dir, err, m)
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatalf("layout %s: %v", dir, err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i := len(layers) - 1; i >= 0; i-- {
		rc, err := layers[i].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if strings.TrimPrefix(h.Name, "./") == file {
				b, err := io.ReadAll(tr)
				rc.Close()
				if err != nil {
					t.Fatal(err)
				}
				return string(b)
			}
		}
		rc.Close()
	}
	t.Fatalf("no %s in the image of %s", file, dir)
	return ""
}

// TestKubeBuilderStorage: a --storage builder (a StatefulSet) keeps its
// cache on a PersistentVolumeClaim. The stack has no provisioner: the
// test makes a hostPath PersistentVolume of its own StorageClass, which
// the controller-manager binds to the replica's claim. The second build
// is a cache hit; the builder Pod deleted, its successor mounts the same
// claim and the next build is still a cache hit (an emptyDir builder
// starts empty: TestKubeBuilderRegistryCache). rm deletes the StatefulSet
// and its ConfigMap, keeps the claim (listed), and a builder created
// again under the same name starts warm from it.
func TestKubeBuilderStorage(t *testing.T) {
	t.Parallel()
	const ns, name = "kb-storage", "bk"
	ctx := context.Background()
	kube := stack.Cluster.Client
	class := "idopipe-test-" + ns
	pv, dir := persistentVolume(t, ns+"-0", class, false)
	r := kubeBuilder(t, ns, name, "--storage", "1Gi", "--storage-class", class)
	if r.code != 0 {
		t.Fatalf("create --storage:\n%s\n%s", r, podsReport(t, ns, name))
	}
	if k := parseBuilder(t, r).Result.Kind; k != "StatefulSet" {
		t.Fatalf("a --storage builder is a %s", k)
	}
	pod := builderPod(t, r)
	claim := "state-" + pod
	pvc, err := kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
	if err != nil || pvc.Spec.VolumeName != pv.Name || pvc.Status.Phase != corev1.ClaimBound {
		t.Fatalf("claim %s: %v, want Bound to %s: %+v", claim, err, pv.Name, pvc)
	}

	host := "kube://" + ns + "/" + name
	build := func(what string) result {
		t.Helper()
		start := time.Now()
		b := idopipe(t, nil, "build", "--buildkit-host", host, "--source", source, "--build-context", "golang:1.24.6=oci-layout://"+busybox,
			"--oci-layout", filepath.Join(t.TempDir(), "oci"), "--version", "1", "--progress", "plain", "--cache-to", "none")
		t.Logf("%s: exit %d in %.1fs", what, b.code, time.Since(start).Seconds())
		if b.code != 0 {
			t.Fatalf("%s:\n%s\n%s", what, b, podsReport(t, ns, name))
		}
		return b
	}
	const step = "RUN chmod 0755 /app/bin/planner"
	if b := build("first build"); !stepRan(b.stderr, step) {
		t.Errorf("the first build on an empty claim did not run its RUN step:\n%s", b.stderr)
	}
	// BuildKit's state is on the volume.
	if _, err := os.Stat(filepath.Join(dir, "cache.db")); err != nil {
		entries, _ := os.ReadDir(dir)
		t.Errorf("no BuildKit state on the PersistentVolume (%s): %v; it holds %v", dir, err, entries)
	}
	if b := build("second build"); !stepCached(b.stderr, step) {
		t.Errorf("the second build was not a cache hit:\n%s", b.stderr)
	}

	// The Pod goes; the StatefulSet's new Pod of the same name mounts the
	// same claim.
	old, err := kube.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	if err := kube.CoreV1().Pods(ns).Delete(ctx, pod, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	waitNewReadyPod(t, ns, pod, old.UID)
	if b := build("build after the Pod's deletion"); !stepCached(b.stderr, step) {
		t.Errorf("the cache did not survive the Pod on its claim:\n%s", b.stderr)
	}

	// rm: the StatefulSet and the ConfigMap go, the claim stays (listed).
	rm := idopipe(t, nil, "buildkit", "rm", "--kubernetes", "-n", ns, name)
	if rm.code != 0 || !strings.Contains(rm.stdout, "builder "+host+" removed (2 objects)") ||
		!strings.Contains(rm.stdout+rm.stderr, "kept PersistentVolumeClaim/"+ns+"/"+claim) {
		t.Fatalf("rm:\n%s", rm)
	}
	if _, err := kube.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
		t.Errorf("rm left the StatefulSet")
	}
	if pvc, err := kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{}); err != nil || pvc.DeletionTimestamp != nil || pvc.Spec.VolumeName != pv.Name {
		t.Errorf("rm did not keep claim %s bound to %s: %v %+v", claim, pv.Name, err, pvc)
	}
	// The same builder again: its replica takes the kept claim, warm.
	if r := kubeBuilder(t, ns, name, "--storage", "1Gi", "--storage-class", class); r.code != 0 {
		t.Fatalf("create again:\n%s\n%s", r, podsReport(t, ns, name))
	}
	if b := build("build on the builder created again"); !stepCached(b.stderr, step) {
		t.Errorf("the builder created again did not start from the kept claim's cache:\n%s", b.stderr)
	}
	if rm := idopipe(t, nil, "buildkit", "rm", "--kubernetes", "-n", ns, name); rm.code != 0 {
		t.Errorf("rm:\n%s", rm)
	}
}

// persistentVolume makes PersistentVolume name (1Gi, ReadWriteOnce, of
// StorageClass class) on a new directory under the package's scratch
// directory, a hostPath volume or, with local, a local volume on the
// stack's node (which applies a Pod's fsGroup, as provisioned volumes do;
// hostPath does not); it deletes it when the test ends.
func persistentVolume(t *testing.T, name, class string, local bool) (*corev1.PersistentVolume, string) {
	t.Helper()
	ctx := context.Background()
	kube := stack.Cluster.Client
	dir, err := os.MkdirTemp(workDir, name+"-")
	if err != nil {
		t.Fatal(err)
	}
	// As the root of a new filesystem: root's, 0755.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              class,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}},
		},
	}
	if local {
		node, err := kube.CoreV1().Nodes().Get(ctx, testenv.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pv.Spec.PersistentVolumeSource = corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: dir}}
		pv.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{node.Labels[corev1.LabelHostname]}}},
		}}}}
	}
	if _, err := kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Released once the namespace (and its claim) is gone; the
		// protection controller then lets it go.
		if err := kube.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete PersistentVolume %s: %v", pv.Name, err)
		}
	})
	return pv, dir
}

// TestKubeBuilderRootlessStorage: a rootless builder keeps its cache on
// its claim too: the volume (a local one, which applies the Pod's fsGroup
// as provisioned volumes do) is writable by user 1000, a build runs, and
// after the Pod's deletion the next build is a cache hit.
func TestKubeBuilderRootlessStorage(t *testing.T) {
	t.Parallel()
	const ns, name = "kb-rootless-storage", "bk"
	class := "idopipe-test-" + ns
	_, dir := persistentVolume(t, ns+"-0", class, true)
	pushRootlessImage(t)
	r := kubeBuilder(t, ns, name, "--rootless", "--storage", "1Gi", "--storage-class", class, "--timeout", "2m")
	if r.code != 0 {
		t.Fatalf("create --rootless --storage:\n%s\n%s", r, podsReport(t, ns, name))
	}
	pod := builderPod(t, r)
	host := "kube://" + ns + "/" + name
	build := func(what string) result {
		t.Helper()
		b := idopipe(t, nil, "build", "--buildkit-host", host, "--source", source, "--build-context", "golang:1.24.6=oci-layout://"+busybox,
			"--oci-layout", filepath.Join(t.TempDir(), "oci"), "--version", "1", "--progress", "plain", "--cache-to", "none")
		if b.code != 0 {
			t.Fatalf("%s:\n%s\n%s", what, b, podsReport(t, ns, name))
		}
		return b
	}
	const step = "RUN chmod 0755 /app/bin/planner"
	if b := build("first build"); !stepRan(b.stderr, step) {
		t.Errorf("the first build did not run its RUN step:\n%s", b.stderr)
	}
	fi, err := os.Stat(filepath.Join(dir, "cache.db"))
	if err != nil {
		entries, _ := os.ReadDir(dir)
		t.Fatalf("no BuildKit state on the volume (%s): %v; it holds %v", dir, err, entries)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != 1000 {
		t.Errorf("the rootless builder's cache.db is owned by %+v, not host uid 1000", fi.Sys())
	}
	old, err := stack.Cluster.Client.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	if err := stack.Cluster.Client.CoreV1().Pods(ns).Delete(context.Background(), pod, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	waitNewReadyPod(t, ns, pod, old.UID)
	if b := build("build after the Pod's deletion"); !stepCached(b.stderr, step) {
		t.Errorf("the rootless builder's cache did not survive the Pod on its claim:\n%s", b.stderr)
	}
	if rm := idopipe(t, nil, "buildkit", "rm", "--kubernetes", "-n", ns, name); rm.code != 0 {
		t.Errorf("rm:\n%s", rm)
	}
}

// waitNewReadyPod waits (at most 3 minutes) until Pod ns/name is back,
// Ready, with another UID than old.
func waitNewReadyPod(t *testing.T, ns, name string, old types.UID) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		p, err := stack.Cluster.Client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && p.UID != old && p.DeletionTimestamp == nil {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Pod %s/%s not back and Ready 3 minutes after its deletion: %v\n%s", ns, name, err, podsReport(t, ns, strings.TrimSuffix(name, "-0")))
		}
		time.Sleep(500 * time.Millisecond)
	}
}
