package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/registry"
)

// buildcacheDigest is the digest of ref's manifest in the stack's
// registry, "" when there is none.
func buildcacheDigest(t *testing.T, ref string) string {
	t.Helper()
	c := creds.Credentials{Username: stack.Registry.Username, Token: creds.NewSecret(stack.Registry.Password)}
	opts, err := registry.Access{Creds: &c, CAFile: stack.Registry.CAFile}.Options(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(r, opts...)
	if err != nil {
		return ""
	}
	return d.Digest.String()
}

// builderPod is the one Ready Pod of builder ns/name.
func builderPod(t *testing.T, r result) string {
	t.Helper()
	b := parseBuilder(t, r)
	if r.code != 0 || b.Result.Ready != 1 || len(b.Result.Pods) != 1 {
		t.Fatalf("builder: %+v\n%s", b.Result, r)
	}
	return b.Result.Pods[0]
}

// TestKubeBuilderRegistryCache: a release through a kube:// builder that
// names no cache exports REGISTRY/OWNER/planner:buildcache (mode=max) from
// the builder Pod, with the session's credentials (never in the builder's
// objects or log); once the Pod and its emptyDir are gone, the next
// release of the same source on the new, empty Pod takes its RUN step
// from that cache; --cache-to none leaves the cache alone, while the same
// build without it writes it. A builder moved back to the Pod network
// (server-side apply drops hostNetwork) cannot reach the node-local
// registry: its build succeeds and says the cache was not exported.
func TestKubeBuilderRegistryCache(t *testing.T) {
	t.Parallel()
	const bns, name, ns = "kc-builders", "bk", "kc-release"
	ctx := context.Background()
	host := "kube://" + bns + "/" + name
	cacheRef := repoOf(ns) + ":buildcache"
	// The stack's registry listens on the node's 127.0.0.1: the builder
	// runs in the node's network to reach it, trusting its CA.
	args := []string{"--host-network", "--builder-registry-ca", stack.Registry.Host + "=" + stack.Registry.CAFile, "--buildkitd-flag", "--debug"}
	pod := builderPod(t, kubeBuilder(t, bns, name, args...))
	d, err := stack.Cluster.Client.AppsV1().Deployments(bns).Get(ctx, name, metav1.GetOptions{})
	if err != nil || !d.Spec.Template.Spec.HostNetwork || d.Spec.Template.Spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Fatalf("--host-network: %v %+v", err, d)
	}
	if got := buildcacheDigest(t, cacheRef); got != "" {
		t.Fatalf("%s exists before the first release: %s", cacheRef, got)
	}

	start := time.Now()
	cold := idopipe(t, nil, releaseArgs(ns, "--buildkit-host", host, "-o", "json")...)
	coldTook := time.Since(start)
	if cold.code != 0 {
		t.Fatalf("release:\n%s\nbuilder log:\n%s", cold, builderLog(t, bns, pod))
	}
	if !strings.Contains(cold.stderr, "idopipe: build cache "+cacheRef+" (type=registry,mode=max") || strings.Contains(cold.stderr, "was not exported") {
		t.Errorf("the release did not say it uses (and exported) %s:\n%s", cacheRef, cold.stderr)
	}
	if runCached(cold.stderr) {
		t.Errorf("the first release on a new builder found its RUN step cached: the warm check proves nothing")
	}
	exported := buildcacheDigest(t, cacheRef)
	if exported == "" {
		t.Fatalf("the release exported no %s:\n%s\nbuilder log:\n%s", cacheRef, cold.stderr, builderLog(t, bns, pod))
	}
	digest := parseRelease(t, cold).Result.Digest
	t.Logf("cold release on %s: %.1fs, exported %s@%s", pod, coldTook.Seconds(), cacheRef, exported)

	// The token went to the builder through the build's session only.
	log := builderLog(t, bns, pod)
	if !strings.Contains(log, "session started") {
		t.Errorf("the builder's --debug log shows no session:\n%s", log)
	}
	var objs []any
	if cm, err := stack.Cluster.Client.CoreV1().ConfigMaps(bns).Get(ctx, name+"-config", metav1.GetOptions{}); err == nil {
		objs = append(objs, cm)
	} else {
		t.Error(err)
	}
	objs = append(objs, d)
	for _, o := range append(objs, log) {
		b, _ := json.Marshal(o)
		if i := strings.Index(string(b), stack.Registry.Password); i >= 0 {
			// Say where, with the token itself redacted: a test's output
			// never carries it either.
			around := string(b[max(0, i-100):min(len(b), i+len(stack.Registry.Password)+100)])
			t.Errorf("the registry token is in the builder's %T at byte %d: %s", o, i, strings.ReplaceAll(around, stack.Registry.Password, "<token>"))
		}
	}

	// Wipe the builder's local cache: its Pod (and emptyDir) goes, the
	// Deployment makes an empty one; an unchanged create waits for it.
	zero := int64(0)
	if err := stack.Cluster.Client.CoreV1().Pods(bns).Delete(ctx, pod, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	waitPodGone(t, bns, pod)
	fresh := builderPod(t, kubeBuilder(t, bns, name, args...))
	if fresh == pod {
		t.Fatalf("the builder kept its Pod %s", pod)
	}

	start = time.Now()
	warm := idopipe(t, nil, releaseArgs(ns, "--buildkit-host", host, "-o", "json")...)
	warmTook := time.Since(start)
	if warm.code != 0 {
		t.Fatalf("release on the new Pod:\n%s", warm)
	}
	if m := buildingOn.FindStringSubmatch(warm.stderr); m == nil || m[1] != fresh {
		t.Errorf("the warm release did not build on the new Pod %s:\n%s", fresh, warm.stderr)
	}
	if !strings.Contains(warm.stderr, "importing cache manifest from "+cacheRef) || !runCached(warm.stderr) {
		t.Errorf("the release on the new Pod did not take its RUN step from %s:\n%s", cacheRef, warm.stderr)
	}
	if got := parseRelease(t, warm).Result.Digest; got != digest {
		t.Errorf("the warm release built %s, the cold one %s", got, digest)
	}
	t.Logf("release on the new, empty Pod %s warm from the registry cache: %.1fs (cold %.1fs)", fresh, warmTook.Seconds(), coldTook.Seconds())

	// --cache-to none: another image of the same name does not touch the
	// cache; the same build without it does (so the check can fail).
	before := buildcacheDigest(t, cacheRef)
	src := sleepySource(t)
	build := func(extra ...string) result {
		a := append([]string{"build", "--buildkit-host", host, "--source", src, "--build-context", "golang:1.24.6=oci-layout://" + busybox,
			"--oci-layout", filepath.Join(t.TempDir(), "oci"), "--version", "1", "--progress", "plain", "--build-arg", "SLEEP=1",
			"--registry", stack.Registry.Host, "--owner", ownerOf(ns)}, extra...)
		r := idopipe(t, []string{"GITHUB_TOKEN=" + stack.Registry.Password, "GITHUB_ACTOR=" + stack.Registry.Username}, a...)
		if r.code != 0 {
			t.Fatalf("build %v:\n%s", extra, r)
		}
		return r
	}
	off := build("--cache-to", "none")
	if strings.Contains(off.stderr, ":buildcache") || buildcacheDigest(t, cacheRef) != before {
		t.Errorf("--cache-to none used or changed %s:\n%s", cacheRef, off.stderr)
	}
	on := build()
	if !strings.Contains(on.stderr, "idopipe: build cache "+cacheRef) || buildcacheDigest(t, cacheRef) == before {
		t.Errorf("the same build without --cache-to none did not export %s:\n%s", cacheRef, on.stderr)
	}

	// Without --host-network the apply takes hostNetwork away (new Pod on
	// the Pod network), where the node's 127.0.0.1 is not the registry:
	// the build goes on and says its cache was not exported.
	r := kubeBuilder(t, bns, name, args[1:]...)
	if p := builderPod(t, r); p == fresh {
		t.Errorf("dropping --host-network kept the Pod %s", p)
	}
	d, err = stack.Cluster.Client.AppsV1().Deployments(bns).Get(ctx, name, metav1.GetOptions{})
	if err != nil || d.Spec.Template.Spec.HostNetwork {
		t.Errorf("hostNetwork still set after a create without --host-network: %v", err)
	}
	lost := build("--build-arg", "SLEEP=2")
	if !strings.Contains(lost.stderr, "idopipe: warning: planner built, but its build cache was not exported (exporting cache to registry: ") {
		t.Errorf("a builder that cannot reach the registry did not say its cache was not exported:\n%s", lost.stderr)
	}
	t.Logf("on the Pod network: %s", grepLine(lost.stderr, "was not exported"))
}

// waitPodGone waits until Pod ns/pod no longer exists.
func waitPodGone(t *testing.T, ns, pod string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if _, err := stack.Cluster.Client.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{}); err != nil {
			return
		}
	}
	t.Fatalf("Pod %s/%s still there a minute after its deletion", ns, pod)
}

// grepLine is the first line of s holding sub.
func grepLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
