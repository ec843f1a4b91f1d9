package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
)

func TestReleaseEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ns = "release-e2e"
	r := idopipe(t, nil, releaseArgs(ns, "-o", "json")...)
	if r.code != 0 {
		t.Fatalf("release failed:\n%s", r)
	}
	res := parseRelease(t, r)
	wantTag := repoOf(ns) + ":0.4.0" // owner lowercased
	if !res.OK || res.Result.Image != wantTag || !strings.HasPrefix(res.Result.Digest, "sha256:") || res.Result.Ref != wantTag+"@"+res.Result.Digest {
		t.Fatalf("unexpected result %+v", res.Result)
	}

	t.Run("registry holds the image under the reported digest", func(t *testing.T) {
		c := creds.Credentials{Username: stack.Registry.Username, Token: creds.NewSecret(stack.Registry.Password)}
		access := registry.Access{Creds: &c, CAFile: stack.Registry.CAFile}
		opts, err := access.Options(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.ParseReference(wantTag)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Get(ref, opts...)
		if err != nil {
			t.Fatalf("pull %s: %v", wantTag, err)
		}
		if desc.Digest.String() != res.Result.Digest {
			t.Errorf("registry has %s at %s, release reported %s", wantTag, desc.Digest, res.Result.Digest)
		}
		img, err := desc.Image()
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Config.User != "nonroot:nonroot" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/app/bin/planner" {
			t.Errorf("image config is not the planner fixture's: user %q entrypoint %v", cf.Config.User, cf.Config.Entrypoint)
		}
		if _, ok := cf.Config.ExposedPorts["33333/tcp"]; !ok {
			t.Errorf("image does not expose 33333/tcp: %v", cf.Config.ExposedPorts)
		}
	})

	kube := stack.Cluster.Client
	t.Run("pull Secret is what kubectl create secret docker-registry makes", func(t *testing.T) {
		s, err := kube.CoreV1().Secrets(ns).Get(ctx, "ghcr-secret", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s.Type != corev1.SecretTypeDockerConfigJson {
			t.Fatalf("type %s", s.Type)
		}
		var cfg struct {
			Auths map[string]struct{ Username, Password, Auth string } `json:"auths"`
		}
		if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
			t.Fatal(err)
		}
		e, ok := cfg.Auths[stack.Registry.Host]
		wantAuth := base64.StdEncoding.EncodeToString([]byte(stack.Registry.Username + ":" + stack.Registry.Password))
		if !ok || len(cfg.Auths) != 1 || e.Username != stack.Registry.Username || e.Password != stack.Registry.Password || e.Auth != wantAuth {
			t.Errorf("dockerconfigjson does not hold the registry's auth (entries: %d, for %s: %v)", len(cfg.Auths), stack.Registry.Host, ok)
		}
		if _, ok := s.Annotations[corev1.LastAppliedConfigAnnotation]; ok {
			t.Errorf("Secret carries %s, a copy of the token", corev1.LastAppliedConfigAnnotation)
		}
	})

	t.Run("objects sit in the right namespace with the right image and pull secret", func(t *testing.T) {
		for _, n := range []string{"planner-configmap", "planner-queries-configmap"} {
			if _, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, n, metav1.GetOptions{}); err != nil {
				t.Errorf("ConfigMap %s/%s: %v", ns, n, err)
			}
		}
		for _, n := range []string{"planner-mongodb-service", "plugin-manager-service"} {
			if _, err := kube.CoreV1().Services(ns).Get(ctx, n, metav1.GetOptions{}); err != nil {
				t.Errorf("Service %s/%s: %v", ns, n, err)
			}
		}
		sa, err := kube.CoreV1().ServiceAccounts(ns).Get(ctx, "planner-service-account", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(sa.ImagePullSecrets) != 1 || sa.ImagePullSecrets[0].Name != "ghcr-secret" {
			t.Errorf("ServiceAccount imagePullSecrets = %v, want [ghcr-secret]", sa.ImagePullSecrets)
		}
		crb, err := kube.RbacV1().ClusterRoleBindings().Get(ctx, clusterName("planner-role-binding", ns), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(crb.Subjects) != 1 || crb.Subjects[0].Namespace != ns {
			t.Errorf("ClusterRoleBinding subjects %+v, want the ServiceAccount in %s", crb.Subjects, ns)
		}
		if _, err := kube.RbacV1().ClusterRoles().Get(ctx, clusterName("planner-role", ns), metav1.GetOptions{}); err != nil {
			t.Error(err)
		}
		images := map[string]string{"planner": res.Result.Ref, "planner-mongodb": "mongo:6"}
		for pod, img := range images {
			p, err := kube.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Spec.Containers[0].Image; got != img {
				t.Errorf("Pod %s image %s, want %s", pod, got, img)
			}
			if p.Status.Phase != corev1.PodRunning {
				t.Errorf("Pod %s phase %s, want Running", pod, p.Status.Phase)
			}
		}
		if len(res.Result.Pods) != 2 || !res.Result.Pods[0].Ready || !res.Result.Pods[1].Ready {
			t.Errorf("result Pods %+v, want both Ready", res.Result.Pods)
		}
	})

	t.Run("the node pulled the pushed digest with the Secret and runs it", func(t *testing.T) {
		assertRunsOnNode(t, ctx, ns, res.Result.Ref)
	})

	t.Run("token is stored in the Secret's data only", func(t *testing.T) {
		assertTokenOnlyInSecret(t, ctx, ns)
	})

	t.Run("rerun converges without writes", func(t *testing.T) {
		before := resourceVersions(t, ctx, ns)
		r2 := idopipe(t, nil, releaseArgs(ns)...)
		if r2.code != 0 {
			t.Fatalf("second release failed:\n%s", r2)
		}
		if !strings.Contains(r2.stdout, "0 created, 0 configured, 0 recreated, 0 pruned, 9 unchanged") || !strings.Contains(r2.stdout, "Secret ghcr-secret unchanged") {
			t.Errorf("second release did not report every object unchanged:\n%s", r2.stdout)
		}
		after := resourceVersions(t, ctx, ns)
		for k, v := range before {
			if after[k] != v {
				t.Errorf("%s changed resourceVersion %s → %s on a no-op release", k, v, after[k])
			}
		}
	})
}

// assertRunsOnNode checks what only a real node shows: the kubelet's
// Pulled event for ref, the Pod's pull Secret put there by the
// ServiceAccount admission plugin, the planner answering on 33333 (through
// the API server's pod proxy) and the mirrored mongo stand-in on 27017.
func assertRunsOnNode(t *testing.T, ctx context.Context, ns, ref string) {
	t.Helper()
	kube := stack.Cluster.Client
	p, err := kube.CoreV1().Pods(ns).Get(ctx, "planner", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.NodeName != testenv.NodeName {
		t.Errorf("planner runs on node %q, want %s", p.Spec.NodeName, testenv.NodeName)
	}
	if len(p.Spec.ImagePullSecrets) == 0 || p.Spec.ImagePullSecrets[0].Name != "ghcr-secret" {
		t.Errorf("planner's imagePullSecrets %v: admission did not copy them from its ServiceAccount", p.Spec.ImagePullSecrets)
	}
	_, digest, _ := strings.Cut(ref, "@")
	if cs := p.Status.ContainerStatuses; len(cs) != 1 || !strings.HasSuffix(cs[0].ImageID, digest) || cs[0].State.Running == nil {
		t.Errorf("planner container status %+v, want running %s", cs, digest)
	}
	evs, err := kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=planner"})
	if err != nil {
		t.Fatal(err)
	}
	pulled := false
	for _, e := range evs.Items {
		if e.Reason == "Pulled" && strings.Contains(e.Message, `"`+ref+`"`) && e.Source.Component == "kubelet" {
			pulled = true
		}
	}
	if !pulled {
		t.Errorf("no kubelet Pulled event for %s among %d events", ref, len(evs.Items))
	}
	body, err := kube.CoreV1().Pods(ns).ProxyGet("http", "planner", "33333", "/", nil).DoRaw(ctx)
	if err != nil || !strings.Contains(string(body), "planner 0.4.0-fixture") {
		t.Errorf("planner on :33333 through the pod proxy: %q, %v", body, err)
	}
	m, err := kube.CoreV1().Pods(ns).Get(ctx, "planner-mongodb", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cs := m.Status.ContainerStatuses; len(cs) != 1 || !strings.HasPrefix(cs[0].ImageID, "docker.io/library/mongo@sha256:") {
		t.Errorf("planner-mongodb container status %+v, want the mirrored docker.io/library/mongo", cs)
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(m.Status.PodIP, "27017"), 5*time.Second)
	if err != nil {
		t.Fatalf("mongo stand-in on %s:27017: %v", m.Status.PodIP, err)
	}
	defer conn.Close()
	b := make([]byte, 64)
	n, _ := conn.Read(b)
	if !strings.Contains(string(b[:n]), "mongod stand-in") {
		t.Errorf("27017 answered %q", b[:n])
	}
}

// TestServiceAccountOutsideTheManifest: with the ServiceAccount admission
// plugin on, a Pod whose ServiceAccount is neither in the cluster nor in
// the manifest fails the plan naming that ServiceAccount (not as missing
// permissions), before anything is written: the namespace this run made is
// gone again.
func TestServiceAccountOutsideTheManifest(t *testing.T) {
	t.Parallel()
	const ns = "sa-outside"
	manifest := fixtureWith(t, ns, map[string]string{"  serviceAccountName: planner-service-account\n": "  serviceAccountName: ghost\n"})
	r := idopipe(t, nil, releaseWith(ns, manifest)...)
	if r.code != int(fail.Cluster) || !strings.Contains(r.stderr, "Pod/sa-outside/planner needs ServiceAccount/sa-outside/ghost, which does not exist") ||
		!strings.Contains(r.stderr, "add ServiceAccount ghost to the manifest") || strings.Contains(r.stderr, "grant the identity") {
		t.Fatalf("release with a ServiceAccount outside the manifest:\n%s", r)
	}
	if _, err := stack.Cluster.Client.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{}); err == nil {
		ns, _ := stack.Cluster.Client.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
		if ns.DeletionTimestamp == nil {
			t.Errorf("the namespace this run created is still there")
		}
	}
}

// assertTokenOnlyInSecret lists every object of every listable kind (in ns
// and cluster-wide) and fails if any but the pull Secret's data holds the
// token: annotations, events and managed fields included.
func assertTokenOnlyInSecret(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	dc := discovery.NewDiscoveryClientForConfigOrDie(stack.Cluster.Config)
	dyn := dynamic.NewForConfigOrDie(stack.Cluster.Config)
	lists, err := dc.ServerPreferredResources()
	if err != nil {
		t.Fatal(err)
	}
	tok := stack.Registry.Password
	checked := 0
	for _, l := range lists {
		gv, _ := schema.ParseGroupVersion(l.GroupVersion)
		for _, res := range l.APIResources {
			if !strings.Contains(strings.Join(res.Verbs, ","), "list") || strings.Contains(res.Name, "/") {
				continue
			}
			items, err := dyn.Resource(gv.WithResource(res.Name)).List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			for _, it := range items.Items {
				checked++
				if res.Kind == "Secret" && it.GetName() == "ghcr-secret" {
					delete(it.Object, "data")
				}
				b, _ := json.Marshal(it.Object)
				if strings.Contains(string(b), tok) || strings.Contains(string(b), base64.StdEncoding.EncodeToString([]byte(tok))) {
					t.Errorf("token stored in %s %s/%s", res.Kind, it.GetNamespace(), it.GetName())
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("checked only %d objects", checked)
	}
}

// TestUpstreamRelease releases the real upstream IDO 0.4.0 manifest and
// CRDs (with their own resource requests: 1.5 of the node's 2 CPUs) when
// the optional upstream fixtures folder sits beside the checkout; a clone
// alone skips it with one line. It runs before the parallel tests, alone on
// the node.
func TestUpstreamRelease(t *testing.T) {
	up := testenv.SkipWithoutUpstream(t)
	const ns = "upstream"
	args := withArg(releaseWith(ns, filepath.Join(up, "manifest-0.4.0.yaml"), "-o", "json"),
		"--crds", filepath.Join(up, "intents_crds_v1alpha1.yaml"))
	r := idopipe(t, nil, args...)
	if r.code != 0 {
		t.Fatalf("release of the upstream manifest:\n%s", r)
	}
	res := parseRelease(t, r)
	ready := 0
	for _, p := range res.Result.Pods {
		if p.Ready {
			ready++
		}
	}
	if ready != 2 {
		t.Errorf("%d of the upstream manifest's Pods Ready, want 2: %+v", ready, res.Result.Pods)
	}
	// The upstream request stays what upstream asks for.
	pod, err := stack.Cluster.Client.CoreV1().Pods(ns).Get(context.Background(), "planner", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := pod.Spec.Containers[0].Resources.Requests.Cpu().String(); got != "1" {
		t.Errorf("planner requests %s CPU, want upstream's 1", got)
	}
	deleteNamespace(t, ns) // its Pods hold most of the node: gone before the parallel tests
}
