package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/idopipe/idopipe/pkg/fail"
)

func TestPreflight(t *testing.T) {
	t.Parallel()
	ok := idopipe(t, nil, append([]string{"preflight"}, registryArgs("preflight")...)...)
	if ok.code != 0 || !strings.Contains(ok.stdout, "may push to "+stack.Registry.Host+"/preflight/planner") {
		t.Fatalf("preflight with a good token:\n%s", ok)
	}
	bad := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(bad, []byte("ghp_notTheToken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := idopipe(t, nil, append([]string{"preflight", "--token-file", bad}, registryArgs("preflight")...)...)
	t.Logf("preflight with a wrong token failed in %s", time.Since(start))
	// GHCR's token endpoint refuses a wrong PAT with 403 DENIED.
	if r.code != int(fail.Credentials) || !strings.Contains(r.stderr, `403 "denied"`) || !strings.Contains(r.stderr, "refused the credentials (the token from --token-file "+bad+") at its token endpoint") {
		t.Fatalf("preflight with a wrong token:\n%s", r)
	}
}

// TestPreflightFakeGHCR403 injects, through a loopback proxy in front of the
// real registry, the response GHCR gives a repository's GITHUB_TOKEN for a
// package it has no write access to (the stand-in has no repositories, so
// only a fake shows it), and checks that the release stops before the build
// with the fix. A PAT without write:packages is refused for real in
// TestTokenReadOnlyPATRefusedBeforeBuild.
func TestPreflightFakeGHCR403(t *testing.T) {
	t.Parallel()
	proxy, err := stack.Registry.StartProxy(t.TempDir(), func(r *http.Request) (int, string, bool) {
		if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/blobs/uploads/") {
			return http.StatusForbidden, `{"errors":[{"code":"DENIED","message":"permission_denied: write_package"}]}`, true
		}
		return 0, "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	args := releaseArgs("preflight-403", "--registry", proxy.Host, "--registry-ca", proxy.CAFile)
	r := idopipe(t, nil, args...)
	if r.code != int(fail.Credentials) || !strings.Contains(r.stderr, "403") || !strings.Contains(r.stderr, "Manage Actions access") {
		t.Fatalf("release against a 403ing registry:\n%s", r)
	}
	if strings.Contains(r.stdout, "==> push") {
		t.Error("the 403 was found only after the push started")
	}
}

func TestPushExtraTagsAndDockerConfig(t *testing.T) {
	t.Parallel()
	layout, digest := buildImage(t, "0.5.0")
	// No $GITHUB_TOKEN: the token comes from a docker config.json.
	dockerDir := t.TempDir()
	auth := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, stack.Registry.Host,
		b64(stack.Registry.Username+":"+stack.Registry.Password))
	if err := os.WriteFile(filepath.Join(dockerDir, "config.json"), []byte(auth), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"GITHUB_TOKEN=", "GITHUB_ACTOR=", "DOCKER_CONFIG=" + dockerDir}
	r := idopipe(t, env, append([]string{"push", "--oci-layout", layout, "--version", "0.5.0", "--tag", "latest", "--tag", "stable", "-o", "json"}, registryArgs("tags")...)...)
	if r.code != 0 {
		t.Fatalf("push:\n%s", r)
	}
	for _, tag := range []string{"0.5.0", "latest", "stable"} {
		v := idopipe(t, nil, "verify-pull", "--registry-ca", stack.Registry.CAFile, "--digest", digest, stack.Registry.Host+"/tags/planner:"+tag)
		if v.code != 0 {
			t.Errorf("tag %s does not resolve to the pushed digest:\n%s", tag, v)
		}
	}
	bad := idopipe(t, nil, append([]string{"push", "--oci-layout", layout, "--version", "0.5.0", "--tag", "Bad:Tag"}, registryArgs("tags")...)...)
	if bad.code != int(fail.Usage) || !strings.Contains(bad.stderr, `--tag "Bad:Tag" is not a valid image tag`) {
		t.Errorf("invalid extra tag:\n%s", bad)
	}
}

func TestVerifyPullDeeper(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	layout, _ := buildImage(t, "0.6.0")
	p := idopipe(t, nil, append([]string{"push", "--oci-layout", layout, "--version", "0.6.0"}, registryArgs("deep")...)...)
	if p.code != 0 {
		t.Fatalf("push:\n%s", p)
	}
	tag := stack.Registry.Host + "/deep/planner:0.6.0"
	ca := []string{"--registry-ca", stack.Registry.CAFile, "--kubeconfig", stack.Cluster.Kubeconfig}

	if r := idopipe(t, nil, append([]string{"verify-pull", tag, "--full", "--platforms-from-cluster"}, ca...)...); r.code != 0 {
		t.Fatalf("full verify:\n%s", r)
	}
	if r := idopipe(t, nil, append([]string{"verify-pull", tag, "--platform", "linux/arm64"}, ca...)...); r.code != int(fail.Platform) || !strings.Contains(r.stderr, "no image for platform linux/arm64") {
		t.Errorf("missing platform:\n%s", r)
	}

	// --as-cluster reads the cluster's pull Secret: missing, then right, then wrong.
	const ns = "verify-as-cluster"
	if _, err := stack.Cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	asCluster := append([]string{"verify-pull", tag, "--as-cluster", "-n", ns}, ca...)
	if r := idopipe(t, []string{"GITHUB_TOKEN="}, asCluster...); r.code != int(fail.Credentials) || !strings.Contains(r.stderr, "no pull Secret "+ns+"/ghcr-secret") {
		t.Errorf("as-cluster without a Secret:\n%s", r)
	}
	secret := func(password string) {
		cfg := fmt.Sprintf(`{"auths":{%q:{"username":%q,"password":%q,"auth":%q}}}`, stack.Registry.Host, stack.Registry.Username, password, b64(stack.Registry.Username+":"+password))
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "ghcr-secret", Namespace: ns}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(cfg)}}
		_ = stack.Cluster.Client.CoreV1().Secrets(ns).Delete(ctx, s.Name, metav1.DeleteOptions{})
		if _, err := stack.Cluster.Client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	secret(stack.Registry.Password)
	if r := idopipe(t, []string{"GITHUB_TOKEN="}, asCluster...); r.code != 0 {
		t.Errorf("as-cluster with the right Secret:\n%s", r)
	}
	secret("ghp_stale")
	if r := idopipe(t, nil, asCluster...); r.code != int(fail.Credentials) || !strings.Contains(r.stderr, "Secret "+ns+"/ghcr-secret") {
		t.Errorf("as-cluster with a stale Secret:\n%s", r)
	}

	// A layer corrupted in the registry's storage: only --full sees it. An
	// image of its own: every planner image shares its layer (one blob per
	// digest for all repositories), so corrupting this test's planner layer
	// corrupted it for the tests running beside (exit 12 in their
	// verify-pull --full).
	c, err := stack.Registry.CorruptImage(ctx, "deep/corrupt")
	if err != nil {
		t.Fatal(err)
	}
	if r := idopipe(t, nil, append([]string{"verify-pull", c.Ref}, ca...)...); r.code != 0 {
		t.Errorf("without --full a corrupt layer is not read, so this must pass:\n%s", r)
	}
	if r := idopipe(t, nil, append([]string{"verify-pull", c.Ref, "--full"}, ca...)...); r.code != int(fail.Corrupt) || !strings.Contains(r.stderr, c.Layer) {
		t.Errorf("corrupt layer with --full:\n%s", r)
	}
}

// TestRegistryHostDoesNotResolve: a registry host under the reserved
// .invalid TLD (RFC 6761: never resolves) fails preflight, push and
// verify-pull with a one-line error naming the host and the fix, class
// registry, without the retries a transient failure gets.
func TestRegistryHostDoesNotResolve(t *testing.T) {
	t.Parallel()
	const host = "registry.idopipe.invalid"
	start := time.Now()
	_, lookupErr := net.DefaultResolver.LookupHost(context.Background(), host)
	var dnsErr *net.DNSError
	nxdomain := errors.As(lookupErr, &dnsErr) && dnsErr.IsNotFound
	t.Logf("the resolver answers %s in %s: %v", host, time.Since(start), lookupErr)

	layout, digest := randomLayout(t, 1<<10, 1)
	for _, args := range [][]string{
		{"preflight", "--registry", host, "--owner", "dns"},
		{"push", "--oci-layout", layout, "--digest", digest, "--registry", host, "--owner", "dns"},
		{"verify-pull", host + "/dns/planner:0.4.0"},
	} {
		start := time.Now()
		r := idopipe(t, nil, args...)
		took := time.Since(start)
		t.Logf("%s failed in %s", args[0], took)
		last := lastLine(r.stderr)
		// What idopipe says follows what the resolver answered: NXDOMAIN
		// here; a machine whose resolver fails gets the DNS message.
		want, fix := "error: cannot resolve registry host "+host+": no such host", "--registry"
		if !nxdomain {
			want, fix = "error: cannot resolve registry host "+host+": the DNS lookup failed", "/etc/resolv.conf"
		}
		if r.code != int(fail.Registry) || !strings.HasPrefix(last, want) ||
			!strings.Contains(last, fix) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
			t.Errorf("%s with an unresolvable registry:\n%s", args[0], r)
		}
		// Not a speed assertion: a lookup that NXDOMAIN answered is not
		// retried, and the registry's retries (1 s, 3 s and 9 s of
		// backoff) would take at least 13 s however idle the machine is.
		if nxdomain && took >= 13*time.Second {
			t.Errorf("%s took %s to fail on a host the resolver knows does not exist: retried", args[0], took)
		}
	}
}
