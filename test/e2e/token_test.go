package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/fail"
)

// The TestToken* tests go through GHCR's token flow for real: the stack's
// registry is distribution with token auth behind a front whose /token
// answers as GHCR's does (internal/testenv/token.go), and the node's
// containerd fetches its tokens there too.

// asPAT is the environment of a run with pat as the registry token of user.
func asPAT(user, pat string) []string {
	return []string{"GITHUB_ACTOR=" + user, "GITHUB_TOKEN=" + pat}
}

// assertNoPAT fails when pat appears in r's arguments or output, but for
// the ::add-mask:: line that hides it in a GitHub Actions log.
func assertNoPAT(t *testing.T, r result, pat string) {
	t.Helper()
	var kept []string
	for _, l := range strings.Split(r.stdout, "\n") {
		if l != "::add-mask::"+pat {
			kept = append(kept, l)
		}
	}
	if strings.Contains(strings.Join(r.args, " ")+strings.Join(kept, "\n")+r.stderr, pat) {
		t.Error("the PAT leaked into the arguments or the output")
	}
}

// TestTokenReadOnlyPATRefusedBeforeBuild: a classic PAT without
// write:packages gets a pull-only token from GHCR, whose upload is then
// refused with 403 permission_denied; the checks beside the build find it
// before anything is pushed, with GHCR's fix.
func TestTokenReadOnlyPATRefusedBeforeBuild(t *testing.T) {
	t.Parallel()
	ro := stack.Registry.IssuePAT("reader", testenv.ReadPackages)
	env := asPAT("reader", ro)
	want := []string{"denied the push of " + stack.Registry.Host + "/ido-test/planner", "lacks the write:packages scope",
		`403 "permission_denied: The token provided does not match expected scopes."`, "create a classic token with write:packages"}

	p := idopipe(t, env, append([]string{"preflight"}, registryArgs("IDO-Test")...)...)
	assertNoPAT(t, p, ro)
	for _, w := range want {
		if p.code != int(fail.Credentials) || !strings.Contains(p.stderr, w) {
			t.Errorf("preflight: want exit 3 and %q:\n%s", w, p)
		}
	}

	out := t.TempDir()
	ghEnv := append(env, "GITHUB_ACTIONS=true", "GITHUB_OUTPUT="+out+"/out", "GITHUB_STEP_SUMMARY="+out+"/summary")
	r := idopipeRaw(t, ghEnv, releaseArgs("token-read-only")...)
	assertNoPAT(t, r, ro)
	annotated := strings.Contains(r.stdout, "::error title=idopipe build::registry "+stack.Registry.Host+" denied the push") ||
		strings.Contains(r.stdout, "::error title=idopipe checks::registry "+stack.Registry.Host+" denied the push")
	if r.code != int(fail.Credentials) || !annotated || !strings.Contains(r.stdout, "lacks the write:packages scope") {
		t.Fatalf("release with a read-only PAT:\n%s", r)
	}
	if strings.Contains(r.stdout, "::group::push") {
		t.Error("the refusal was found only after the push started")
	}
	// The pull-only token still reads: verify-pull of an image the PAT may
	// read works with it.
	dir, digest := randomLayout(t, 1024, 1)
	if p := idopipe(t, nil, "push", "--oci-layout", dir, "--digest", digest, "--version", "1", "--progress", "quiet",
		"--registry", stack.Registry.Host, "--registry-ca", stack.Registry.CAFile, "--owner", "read-only"); p.code != 0 {
		t.Fatalf("push:\n%s", p)
	}
	v := idopipe(t, env, "verify-pull", "--registry-ca", stack.Registry.CAFile, "--digest", digest, stack.Registry.Host+"/read-only/planner:1")
	assertNoPAT(t, v, ro)
	if v.code != 0 {
		t.Errorf("verify-pull with a read-only PAT:\n%s", v)
	}
}

// TestTokenActionsTokenWithoutWrite: a workflow's GITHUB_TOKEN without
// permissions: packages: write is granted pull only, and GHCR refuses its
// upload with "permission_denied: write_package"; the preflight says which
// permission the job lacks.
func TestTokenActionsTokenWithoutWrite(t *testing.T) {
	t.Parallel()
	tok := stack.Registry.IssueActionsToken("ido-test", testenv.ReadPackages)
	r := idopipe(t, asPAT("some-actor", tok), append([]string{"preflight"}, registryArgs("IDO-Test")...)...)
	assertNoPAT(t, r, tok)
	for _, w := range []string{"a workflow's GITHUB_TOKEN, may not write package " + stack.Registry.Host + "/ido-test/planner",
		`403 "permission_denied: write_package"`, "permissions: packages: write"} {
		if r.code != int(fail.Credentials) || !strings.Contains(r.stderr, w) {
			t.Errorf("want exit 3 and %q:\n%s", w, r)
		}
	}
	w := stack.Registry.IssueActionsToken("ido-test", testenv.WritePackages)
	if r := idopipe(t, asPAT("some-actor", w), append([]string{"preflight"}, registryArgs("IDO-Test")...)...); r.code != 0 {
		t.Errorf("preflight with packages: write:\n%s", r)
	}
}

// TestTokenPublicPackage: a public package is pulled anonymously for real
// (GHCR hands out anonymous tokens for it): verify-pull says it is public,
// and the cluster pulls it without any Secret; made private again, the
// same Pod's pull is refused (containerd's anonymous token fetch gets 401)
// and verify-pull says private.
func TestTokenPublicPackage(t *testing.T) {
	t.Parallel()
	layoutDir, digest := buildImage(t, "0.9.0")
	p := idopipe(t, nil, "push", "--oci-layout", layoutDir, "--digest", digest, "--version", "1", "--progress", "quiet",
		"--registry", stack.Registry.Host, "--registry-ca", stack.Registry.CAFile, "--owner", "public-pkg")
	if p.code != 0 {
		t.Fatalf("push:\n%s", p)
	}
	image := stack.Registry.Host + "/public-pkg/planner:1"
	stack.Registry.SetPublic("public-pkg/planner", true)
	t.Cleanup(func() { stack.Registry.SetPublic("public-pkg/planner", false) })

	r := idopipe(t, nil, "verify-pull", "--registry-ca", stack.Registry.CAFile, image, "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"visibility":"public"`) || !strings.Contains(r.stdout, "public: anonymous pulls work, the cluster needs no pull Secret") {
		t.Errorf("a public package:\n%s", r)
	}
	// Anonymous: no token at all, from the command's environment either.
	anon := idopipe(t, []string{"GITHUB_TOKEN=", "GITHUB_ACTOR="}, "verify-pull", "--registry-ca", stack.Registry.CAFile, "--full", image)
	if anon.code != 0 {
		t.Errorf("an anonymous verify-pull --full of a public package:\n%s", anon)
	}

	ctx := context.Background()
	const ns = "token-public"
	cleanupNamespace(t, ns)
	kube := stack.Cluster.Client
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The ServiceAccount admission wants the namespace's default
	// ServiceAccount, which the controller-manager makes, before a Pod.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := kube.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no default ServiceAccount in " + ns + " after 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	pulled := func(t *testing.T, pod string) (bool, string) {
		t.Helper()
		grace := int64(0)
		spec := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: ns},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: &grace,
				AutomountServiceAccountToken:  new(bool),
				Containers: []corev1.Container{{Name: "planner", Image: image, ImagePullPolicy: corev1.PullAlways,
					SecurityContext: &corev1.SecurityContext{RunAsUser: new(int64(10001)), RunAsGroup: new(int64(10001))}}},
			},
		}
		if _, err := kube.CoreV1().Pods(ns).Create(ctx, spec, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) {
			got, err := kube.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, cs := range got.Status.ContainerStatuses {
				if cs.ImageID != "" {
					return true, ""
				}
				if w := cs.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
					return false, w.Message
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("Pod %s: neither pulled nor refused after 90s", pod)
		return false, ""
	}
	if ok, msg := pulled(t, "public"); !ok {
		t.Errorf("the node did not pull the public package without a Secret: %s", msg)
	}

	stack.Registry.SetPublic("public-pkg/planner", false)
	ok, msg := pulled(t, "private")
	if ok || !strings.Contains(msg, "failed to fetch anonymous token") || !strings.Contains(msg, "401") {
		t.Errorf("the node's pull of a private package without a Secret: pulled %v, %q", ok, msg)
	}
	t.Logf("the kubelet's message for a private package without a Secret: %s", msg)
	r = idopipe(t, nil, "verify-pull", "--registry-ca", stack.Registry.CAFile, image)
	if r.code != 0 || !strings.Contains(r.stdout, "private: anonymous pulls are refused") {
		t.Errorf("a private package:\n%s", r)
	}
}

// TestTokenRevokedBetweenPushAndDeploy: the PAT that pushed is revoked
// before the deploy; the pull Secret holds it, the kubelet's token fetch
// gets GHCR's 403 (containerd: "failed to fetch oauth token"), and the wait
// names the credentials as refused at once, as doctor does afterwards.
func TestTokenRevokedBetweenPushAndDeploy(t *testing.T) {
	t.Parallel()
	pat := stack.Registry.IssuePAT("ido-bot", testenv.WritePackages)
	env := asPAT("ido-bot", pat)
	layoutDir, digest := buildImage(t, "0.9.1")
	p := idopipe(t, env, "push", "--oci-layout", layoutDir, "--digest", digest, "--version", "1", "--progress", "quiet",
		"--registry", stack.Registry.Host, "--registry-ca", stack.Registry.CAFile, "--owner", "revoked", "-o", "json")
	assertNoPAT(t, p, pat)
	if p.code != 0 {
		t.Fatalf("push:\n%s", p)
	}
	var ref string
	if err := jsonField(p, "ref", &ref); err != nil || ref == "" {
		t.Fatalf("push result: %v\n%s", err, p)
	}
	stack.Registry.RevokePAT(pat)

	const ns = "token-revoked"
	start := time.Now()
	r := idopipe(t, env, "deploy", "--image", ref, "-n", ns, "--manifest", manifestFor(ns),
		"--crds", filepath.Join(fixtures, "intents_crds_v1alpha1.yaml"), "--timeout", "90s")
	took := time.Since(start)
	assertNoPAT(t, r, pat)
	last := lastLine(r.stderr)
	for _, w := range []string{"pull-unauthorized", "failed to fetch oauth token", "403 Forbidden", "refused the credentials in Secret ghcr-secret"} {
		if r.code != int(fail.NotReady) || !strings.Contains(last, w) {
			t.Errorf("want exit %d and %q in %q:\n%s", fail.NotReady, w, last, r)
		}
	}
	if strings.Contains(last, "not Ready after") {
		t.Errorf("a refused token waited for the deadline:\n%s", r)
	}
	t.Logf("deploy with a revoked PAT failed in %.1fs: %s", took.Seconds(), last)

	d := idopipe(t, nil, "doctor", "-n", ns, "--registry-ca", stack.Registry.CAFile)
	assertNoPAT(t, d, pat)
	if d.code == 0 || !strings.Contains(d.stdout, "refused the credentials") || !strings.Contains(d.stdout, "token endpoint") {
		t.Errorf("doctor with a revoked PAT in the Secret:\n%s", d)
	}
}

// TestTokenCrossOwnerMount: a push that may mount from another owner's
// package mounts when its token may read the source (GHCR mounts across
// owners then, k3s-io/k3s#2401) and uploads when it may not; either way
// the push completes and verifies. The source made public is readable by
// any token, and mounts again.
func TestTokenCrossOwnerMount(t *testing.T) {
	t.Parallel()
	base, err := random.Image(256<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	// Fresh repositories each run (go test -count): nothing is there yet.
	run := fmt.Sprintf("-%d", time.Now().UnixNano()%1e9)
	baseDir, baseDigest := writeLayout(t, base)
	if b := pushJSON(t, "--oci-layout", baseDir, "--digest", baseDigest, "--image-name", "base"+run, "--version", "1",
		"--registry", stack.Registry.Host, "--registry-ca", stack.Registry.CAFile, "--owner", "mount-src"); b.Uploaded != 4 {
		t.Fatalf("base push: %+v", b)
	}
	both := stack.Registry.IssuePAT("mounter", testenv.WritePackages, "mount-src", "mount-dst")
	own := stack.Registry.IssuePAT("mounter", testenv.WritePackages, "mount-dst")
	shared, _ := layerDigests(t, base)
	push := func(t *testing.T, pat, image string) pushBlobs {
		t.Helper()
		extra, err := random.Layer(64<<10, "application/vnd.docker.image.rootfs.diff.tar.gzip")
		if err != nil {
			t.Fatal(err)
		}
		app, err := mutate.AppendLayers(base, extra)
		if err != nil {
			t.Fatal(err)
		}
		dir, digest := writeLayout(t, app)
		image += run
		r := idopipe(t, asPAT("mounter", pat), "push", "-o", "json", "--oci-layout", dir, "--digest", digest, "--image-name", image, "--version", "1",
			"--mount-from", "mount-src/base"+run, "--registry", stack.Registry.Host, "--registry-ca", stack.Registry.CAFile, "--owner", "mount-dst")
		assertNoPAT(t, r, pat)
		if r.code != 0 {
			t.Fatalf("push:\n%s", r)
		}
		var b pushBlobs
		if err := jsonField(r, "blobs", &b); err != nil {
			t.Fatalf("push result: %v\n%s", err, r)
		}
		v := idopipe(t, nil, "verify-pull", "--full", "--registry-ca", stack.Registry.CAFile, "--digest", digest, stack.Registry.Host+"/mount-dst/"+image+":1")
		if v.code != 0 {
			t.Fatalf("verify the pushed image:\n%s", v)
		}
		return b
	}
	t.Run("with read on the source", func(t *testing.T) {
		if b := push(t, both, "with-read"); b.Mounted != len(shared) || b.Uploaded != 2 {
			t.Errorf("%+v, want %d mounted and 2 uploaded", b, len(shared))
		}
	})
	t.Run("without read on the source", func(t *testing.T) {
		if b := push(t, own, "without-read"); b.Mounted != 0 || b.Uploaded != len(shared)+2 {
			t.Errorf("%+v, want nothing mounted and %d uploaded", b, len(shared)+2)
		}
	})
	t.Run("source made public", func(t *testing.T) {
		stack.Registry.SetPublic("mount-src/base"+run, true)
		defer stack.Registry.SetPublic("mount-src/base"+run, false)
		if b := push(t, own, "public-source"); b.Mounted != len(shared) || b.Uploaded != 2 {
			t.Errorf("%+v, want %d mounted and 2 uploaded", b, len(shared))
		}
	})
}

// TestTokenExpiresMidPush: with tokens that live one second, a push over a
// slow link outlasts its token; the registry refuses the expired token
// (401 invalid_token), the client fetches a new one and the push completes
// and verifies.
func TestTokenExpiresMidPush(t *testing.T) {
	t.Parallel()
	// The token lifetime is the registry's, for every client: this test
	// shortens it on a registry of its own.
	reg, env := ownRegistry(t)
	dir, digest := randomLayout(t, 256<<10, 6)
	reg.SetTokenLifetime(time.Second)
	// The slow link: a proxy holds every request for 150 ms, a seventh of
	// the token's life, so the push of 7 blobs (each a check, a start, the
	// data and a commit) and a manifest outlasts several tokens on any
	// machine, while each request, a retried one too, fits in one token's
	// life. (A large image made the push long only where bytes move
	// slowly, and cost seconds of CPU to make and move.)
	slow, err := reg.StartProxy(t.TempDir(), func(*http.Request) (int, string, bool) {
		time.Sleep(150 * time.Millisecond)
		return 0, "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = slow.Close() })
	before := reg.TokenStats()
	start := time.Now()
	r := idopipe(t, env, "push", "--oci-layout", dir, "--digest", digest, "--version", "1", "--jobs", "1", "-o", "json",
		"--registry", slow.Host, "--registry-ca", slow.CAFile, "--owner", "expiry")
	took := time.Since(start)
	after := reg.TokenStats()
	if r.code != 0 {
		t.Fatalf("push with expiring tokens:\n%s", r)
	}
	t.Logf("pushed 6 layers through a slow link in %.1fs (%d requests); tokens issued %d, requests refused for an expired token %d",
		took.Seconds(), slow.Requests(), after.Issued-before.Issued, after.Expired-before.Expired)
	if after.Expired == before.Expired || after.Issued-before.Issued < 2 {
		t.Errorf("no token expired mid-push (%+v → %+v): the push was quicker than the token's lifetime", before, after)
	}
	var res struct {
		Result struct{ Ref string } `json:"result"`
	}
	if err := json.Unmarshal([]byte(lastLine(r.stdout)), &res); err != nil || res.Result.Ref == "" {
		t.Fatalf("push result: %v\n%s", err, r)
	}
	v := idopipe(t, env, "verify-pull", "--full", "--registry-ca", reg.CAFile, "--digest", digest, reg.Host+"/expiry/planner:1")
	if v.code != 0 {
		t.Fatalf("verify the pushed image:\n%s", v)
	}
}
