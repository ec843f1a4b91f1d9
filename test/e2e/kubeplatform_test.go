package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
)

// platformSource is a build context that BuildKit builds for any platform
// without running anything: FROM scratch and COPY, no RUN step.
func platformSource(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for f, body := range map[string]string{
		"Dockerfile": "FROM scratch\nCOPY hello.txt /hello.txt\n",
		"hello.txt":  "built per platform\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// buildingPlatform is the line a build on a per-platform builder says for
// each platform: the platform, its builder and the Pod.
var buildingPlatform = regexp.MustCompile(`idopipe: building (\S+) on (kube://\S+), Pod (\S+)`)

// platformPods maps each platform the output says it built to its
// builder's address and Pod.
func platformPods(out string) map[string][2]string {
	m := map[string][2]string{}
	for _, s := range buildingPlatform.FindAllStringSubmatch(out, -1) {
		m[s[1]] = [2]string{s[2], s[3]}
	}
	return m
}

// platformStepCached tells whether the COPY step of platform's solve was
// CACHED in plain progress output (its steps are named "[PLATFORM] …").
func platformStepCached(progress, platform string) bool {
	m := regexp.MustCompile(`(?m)^#(\d+) \[` + regexp.QuoteMeta(platform) + `\] \[\d+/\d+\] COPY hello.txt`).FindStringSubmatch(progress)
	return m != nil && regexp.MustCompile(`(?m)^#`+m[1]+` CACHED$`).MatchString(progress)
}

// TestKubePlatformBuilders: `buildkit create --platform linux/amd64
// --platform linux/arm64` makes one builder per platform, and a release
// with --platform linux/amd64,linux/arm64 on kube://NS/NAME solves each
// platform in its own builder's Pod, each with its own registry cache,
// and pushes ONE index of both platforms (with each one's provenance);
// a second release is cached in each builder; a rerun with one platform
// removes the other's builder; a platform without a builder, a build
// naming no platform and bad create flags each stop with one line and
// exit 2 before anything is solved or written.
//
// The stack has one node, an amd64 one. The arm64 builder is placed on it
// by overriding its node selector (--platform-node-selector
// linux/arm64=kubernetes.io/arch=amd64): its buildkitd's worker is
// configured for linux/arm64 (--oci-worker-platform), and a Dockerfile
// without a RUN step needs
// no arm64 CPU (COPY and the export run in buildkitd itself), so the arm64
// image is really produced by that builder, in its own Pod, with its
// config's architecture arm64. What this proves: the creation, placement
// overrides, routing of each platform to its builder, concurrent solves,
// the per-platform caches, the join into one index and its push. What it
// does not prove: that an arm64 node runs the arm64 builder (the default
// selector kubernetes.io/arch=arm64 is checked in the printed objects
// only), nor a RUN step run natively on arm64.
func TestKubePlatformBuilders(t *testing.T) {
	t.Parallel()
	const bns, bname, ns = "kp-builders", "bk", "kp-release"
	ctx := context.Background()
	host := "kube://" + bns + "/" + bname
	node, err := stack.Cluster.Client.CoreV1().Nodes().Get(ctx, testenv.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	arch := node.Labels["kubernetes.io/arch"]
	if arch == "" {
		t.Fatalf("node %s has no kubernetes.io/arch label: %v", node.Name, node.Labels)
	}

	// The printed objects: a builder per platform on its platform's nodes.
	dry := idopipe(t, nil, "buildkit", "create", "--kubernetes", "-n", bns, bname, "--platform", "linux/amd64,linux/arm64", "--dry-run", "-o", "yaml")
	if dry.code != 0 {
		t.Fatalf("dry run:\n%s", dry)
	}
	for _, want := range []string{"name: bk-linux-amd64\n", "name: bk-linux-arm64\n", "kubernetes.io/arch: arm64", "kubernetes.io/arch: amd64",
		"--oci-worker-platform=linux/arm64", "idopipe.dev/platform: linux/arm64", "idopipe.dev/builder: bk"} {
		if !strings.Contains(dry.stdout, want) {
			t.Errorf("the printed builder lacks %q:\n%s", want, dry.stdout)
		}
	}

	// Bad flags: one line, exit 2, nothing written.
	for _, args := range [][]string{
		{"--platform", "linux/arm64", "--platform", "linux/arm64"},
		{"--platform", "linux/arm65"},
		{"--platform", "linux/amd64", "--platform-node-selector", "linux/arm64=kubernetes.io/arch=amd64"},
		{"--platform", "linux/arm64", "--platform-node-selector", "linux/arm64"},
	} {
		r := kubeBuilder(t, bns, bname, args...)
		if r.code != int(fail.Usage) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 || r.stderr == "" {
			t.Errorf("create %v: want exit 2 and one line:\n%s", args, r)
		}
		t.Logf("create %v: %s", args, strings.TrimSpace(r.stderr))
	}
	if list, err := stack.Cluster.Client.AppsV1().Deployments(bns).List(ctx, metav1.ListOptions{}); err != nil || len(list.Items) != 0 {
		t.Fatalf("a refused create wrote Deployments: %v %v", err, list)
	}

	// The stack's registry is on the node's 127.0.0.1: the builders run in
	// the node's network to push their caches there.
	common := []string{"--host-network", "--builder-registry-ca", stack.Registry.Host + "=" + stack.Registry.CAFile, "--buildkitd-flag", "--debug"}
	both := append([]string{"--platform", "linux/amd64", "--platform", "linux/arm64", "--platform-node-selector", "linux/arm64=kubernetes.io/arch=" + arch}, common...)
	r := kubeBuilder(t, bns, bname, both...)
	if r.code != 0 {
		t.Fatalf("create:\n%s", r)
	}
	b := parseBuilder(t, r)
	if b.Result.Address != host || b.Result.Ready != 2 || len(b.Result.Pods) != 2 || !strings.Contains(r.stdout, `"platform":"linux/arm64"`) {
		t.Fatalf("builder %+v\n%s", b.Result, r.stdout)
	}
	arm, err := stack.Cluster.Client.AppsV1().Deployments(bns).Get(ctx, bname+"-linux-arm64", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sel := arm.Spec.Template.Spec.NodeSelector; len(sel) != 1 || sel["kubernetes.io/arch"] != arch {
		t.Errorf("the arm64 builder's node selector is %v, want the override kubernetes.io/arch=%s alone", sel, arch)
	}
	if args := strings.Join(arm.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "--oci-worker-platform=linux/arm64") {
		t.Errorf("the arm64 builder's buildkitd args: %s", args)
	}

	// status asks each platform's buildkitd through the API server: the
	// arm64 one's worker has linux/arm64 as its platform (`buildctl debug
	// workers`), though its node is amd64.
	st := idopipe(t, nil, "buildkit", "status", "--kubernetes", "-n", bns, bname, "-o", "json")
	var members []struct {
		Address         string   `json:"address"`
		Platform        string   `json:"platform"`
		WorkerPlatforms []string `json:"workerPlatforms"`
		Pods            []string `json:"pods"`
	}
	if err := jsonField(st, "platforms", &members); st.code != 0 || err != nil || len(members) != 2 {
		t.Fatalf("status: %v\n%s", err, st)
	}
	for _, m := range members {
		// BuildKit lists the worker's own platform first, then what the
		// node's CPU (and any emulator) can run.
		if m.Address != host+"-"+strings.ReplaceAll(m.Platform, "/", "-") || len(m.WorkerPlatforms) == 0 || m.WorkerPlatforms[0] != m.Platform || len(m.Pods) != 1 {
			t.Errorf("status of %s: %+v", m.Platform, m)
		}
	}
	t.Logf("status: %+v", members)

	src := platformSource(t)
	release := func(extra ...string) result {
		args := withArg(releaseArgs(ns, "--buildkit-host", host, "--platform", "linux/amd64,linux/arm64", "--to", "verify-pull", "-o", "json"), "--source", src)
		return idopipe(t, nil, append(args, extra...)...)
	}
	first := release("--provenance", "min")
	if first.code != 0 {
		t.Fatalf("release:\n%s", first)
	}
	on := platformPods(first.stderr)
	if len(on) != 2 || on["linux/amd64"][0] != host+"-linux-amd64" || on["linux/arm64"][0] != host+"-linux-arm64" || on["linux/amd64"][1] == on["linux/arm64"][1] {
		t.Fatalf("the release did not build each platform on its own builder: %v\n%s", on, first.stderr)
	}
	for _, l := range buildingPlatform.FindAllString(first.stderr, -1) {
		t.Log(l)
	}
	t.Log(grepLine(first.stderr, "with its own build cache"))
	// Each solve ran in its own builder's Pod: its buildkitd (--debug)
	// logged the session, the arm64 one's worker configured for linux/arm64.
	for p, where := range on {
		log := builderLog(t, bns, where[1])
		if !strings.Contains(log, "session started") {
			t.Errorf("builder Pod %s (%s) shows no solve:\n%s", where[1], p, log)
		}
		w := grepLine(log, "found worker")
		if !strings.Contains(w, "platforms=["+p+"]") {
			t.Errorf("builder Pod %s's worker is not configured for %s: %s", where[1], p, w)
		}
		t.Logf("%s: %s", where[1], w)
	}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		if !regexp.MustCompile(`(?m)^#\d+ \[` + p + `\] \[1/1\] COPY hello.txt`).MatchString(first.stderr) {
			t.Errorf("the progress does not label %s's steps:\n%s", p, first.stderr)
		}
	}
	var plats []struct{ Platform, Digest, Builder, Replica string }
	if err := jsonField(first, "platforms", &plats); err != nil || len(plats) != 2 {
		t.Fatalf("result platforms: %v %+v\n%s", err, plats, first.stdout)
	}
	for _, p := range plats {
		if p.Builder != host+"-"+strings.ReplaceAll(p.Platform, "/", "-") || p.Replica != bns+"/"+on[p.Platform][1] {
			t.Errorf("result says %s was built on %s %s; the progress said %v", p.Platform, p.Builder, p.Replica, on[p.Platform])
		}
	}

	// The registry has ONE index: both platforms, each image of its
	// architecture, each with its provenance.
	rel := parseRelease(t, first)
	opts := registryOpts(t)
	ref, err := name.ParseReference(rel.Result.Ref)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref, opts...)
	if err != nil {
		t.Fatalf("%s is not an index: %v", rel.Result.Ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	images := map[string]v1.Hash{}
	attests := map[string]bool{}
	for _, d := range im.Manifests {
		if d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
			attests[d.Annotations["vnd.docker.reference.digest"]] = true
			continue
		}
		if d.Platform == nil {
			t.Fatalf("index entry %s has no platform", d.Digest)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != d.Platform.Architecture || cf.OS != d.Platform.OS {
			t.Errorf("index entry %s says %s, its config %s/%s", d.Digest, d.Platform, cf.OS, cf.Architecture)
		}
		images[d.Platform.String()] = d.Digest
	}
	if len(images) != 2 || images["linux/amd64"] == (v1.Hash{}) || images["linux/arm64"] == (v1.Hash{}) {
		t.Fatalf("index platforms %v:\n%+v", images, im.Manifests)
	}
	for p, h := range images {
		if !attests[h.String()] {
			t.Errorf("no provenance for %s (%s) in the index: %v", p, h, attests)
		}
	}
	t.Logf("index %s: %v", rel.Result.Digest, images)
	// Each platform's cache is its own tag.
	for _, p := range []string{"linux-amd64", "linux-arm64"} {
		if buildcacheDigest(t, repoOf(ns)+":buildcache-"+p) == "" {
			t.Errorf("no cache %s:buildcache-%s:\n%s", repoOf(ns), p, first.stderr)
		}
	}
	if d := buildcacheDigest(t, repoOf(ns)+":buildcache"); d != "" {
		t.Errorf("two builders wrote one cache %s:buildcache", repoOf(ns))
	}

	// Again: each platform on the same Pod, its step cached there.
	again := release()
	if again.code != 0 {
		t.Fatalf("second release:\n%s", again)
	}
	on2 := platformPods(again.stderr)
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		if on2[p] != on[p] {
			t.Errorf("second release built %s on %v, the first on %v", p, on2[p], on[p])
		}
		if !platformStepCached(again.stderr, p) {
			t.Errorf("second release: %s's COPY step not cached in its builder:\n%s", p, again.stderr)
		}
	}

	// A platform without a builder, and a build naming no platform: one
	// line, exit 2, nothing solved.
	build := func(platform ...string) result {
		args := []string{"build", "--buildkit-host", host, "--source", src, "--oci-layout", filepath.Join(t.TempDir(), "oci"), "--version", "1", "--progress", "plain", "--cache-to", "none", "-o", "json"}
		if len(platform) > 0 {
			args = append(args, "--platform", platform[0])
		}
		return idopipe(t, nil, args...)
	}
	for _, tc := range []struct{ platform, want string }{
		{"linux/amd64,linux/s390x", "builder " + host + " has no builder for platform linux/s390x (it builds linux/amd64, linux/arm64): add it: `idopipe buildkit create --kubernetes -n " + bns + " " + bname + " --platform linux/amd64 --platform linux/arm64 --platform linux/s390x`"},
		{"", "names no platform"},
	} {
		var r result
		if tc.platform == "" {
			r = build()
		} else {
			r = build(tc.platform)
		}
		if r.code != int(fail.Usage) || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stderr, "idopipe: building") {
			t.Errorf("build --platform %q: want exit 2 before any solve, saying %q:\n%s", tc.platform, tc.want, r)
		}
		t.Logf("build --platform %q: %s", tc.platform, strings.TrimSpace(r.stderr))
	}
	// One platform: built on that platform's builder alone, no index.
	one := build("linux/arm64")
	var mediaType string
	var imgs []struct{ Platform, Builder string }
	if one.code != 0 || jsonField(one, "mediaType", &mediaType) != nil || jsonField(one, "images", &imgs) != nil ||
		len(imgs) != 1 || imgs[0].Platform != "linux/arm64" || imgs[0].Builder != host+"-linux-arm64" || strings.Contains(mediaType, "index") {
		t.Errorf("build --platform linux/arm64: %s %+v\n%s", mediaType, imgs, one)
	}

	// A rerun without arm64 removes its builder, and a build for it says so.
	r = kubeBuilder(t, bns, bname, append([]string{"--platform", "linux/amd64"}, common...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "Deployment/"+bns+"/"+bname+"-linux-arm64") {
		t.Fatalf("create with linux/amd64 alone:\n%s", r)
	}
	if _, err := stack.Cluster.Client.AppsV1().Deployments(bns).Get(ctx, bname+"-linux-arm64", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the dropped platform's Deployment is still there: %v", err)
	}
	if _, err := stack.Cluster.Client.CoreV1().ConfigMaps(bns).Get(ctx, bname+"-linux-arm64-config", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the dropped platform's ConfigMap is still there: %v", err)
	}
	if _, err := stack.Cluster.Client.AppsV1().Deployments(bns).Get(ctx, bname+"-linux-amd64", metav1.GetOptions{}); err != nil {
		t.Errorf("the kept platform's Deployment: %v", err)
	}
	if gone := build("linux/amd64,linux/arm64"); gone.code != int(fail.Usage) || !strings.Contains(gone.stderr, "no builder for platform linux/arm64") {
		t.Errorf("build for the dropped platform:\n%s", gone)
	}

	// rm removes the per-platform builders.
	rm := idopipe(t, nil, "buildkit", "rm", "--kubernetes", "-n", bns, bname)
	if rm.code != 0 || !strings.Contains(rm.stdout, "builder "+host+" removed (2 objects)") {
		t.Fatalf("rm:\n%s", rm)
	}
	if list, err := stack.Cluster.Client.AppsV1().Deployments(bns).List(ctx, metav1.ListOptions{}); err != nil || len(list.Items) != 0 {
		t.Errorf("rm left Deployments: %v %v", err, list)
	}
}

// registryOpts are remote options reading the stack's registry.
func registryOpts(t *testing.T) []remote.Option {
	t.Helper()
	c := creds.Credentials{Username: stack.Registry.Username, Token: creds.NewSecret(stack.Registry.Password)}
	opts, err := registry.Access{Creds: &c, CAFile: stack.Registry.CAFile}.Options(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return opts
}
