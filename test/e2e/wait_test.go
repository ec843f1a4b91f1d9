package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/fail"
)

// TestWaitDiagnoses breaks a deploy in each way the guide's troubleshooting
// section lists, for real: the node's kubelet pulls (or fails to), the
// container runs (or exits), the scheduler places the Pod (or cannot). The
// wait stage must name each cause and its fix within seconds of the
// kubelet's first report, not at the deadline, and `idopipe doctor` must
// name the same cause afterwards.
func TestWaitDiagnoses(t *testing.T) {
	t.Parallel()
	ref := pushedImage(t)
	private := pushPrivate(t, stack.Registry.Host+"/ido-test/private-base:1", "amd64")
	pushPrivate(t, stack.Mirror.Host+"/idopipe/arm64-only:1", "arm64") // docker.io/idopipe/arm64-only:1 on the node
	mongo := func(image string) map[string]string {
		return map[string]string{"      image: mongo:6\n": "      image: " + image + "\n"}
	}
	cases := []struct {
		name     string
		replace  map[string]string
		env      []string
		timeout  string
		want     []string
		doctor   string // what doctor must say too ("" skips it)
		deadline bool   // fails only at the deadline
	}{
		{name: "wrong token in the Secret", env: []string{"GITHUB_TOKEN=ghp_notTheRealToken0000"},
			want:   []string{"Pod wait-0/planner: pull-unauthorized", "failed to fetch oauth token", "403 Forbidden", "refused the credentials in Secret ghcr-secret", "--as-cluster"},
			doctor: `403 "denied"`},
		{name: "Secret not on the ServiceAccount", replace: mongo(private),
			want:   []string{"Pod wait-1/planner-mongodb: pull-secret-not-on-serviceaccount", "ServiceAccount default lists none", "add imagePullSecrets"},
			doctor: "pull-secret-not-on-serviceaccount"},
		{name: "pull Secret missing", replace: map[string]string{
			"      image: mongo:6\n":                      "      image: " + private + "\n",
			"spec:\n  containers:\n    - name: mongodb\n": "spec:\n  imagePullSecrets: [{name: no-such-secret}]\n  containers:\n    - name: mongodb\n"},
			want:   []string{"Pod wait-2/planner-mongodb: pull-secret-missing", "no-such-secret does not exist in wait-2", "create Secret no-such-secret"},
			doctor: "pull-secret-missing"},
		{name: "tag missing in the registry", replace: mongo("mongo:7"),
			want: []string{"Pod wait-3/planner-mongodb: image-not-found", "docker.io/library/mongo:7", "push the image"}},
		{name: "no manifest for the node's platform", replace: mongo("idopipe/arm64-only:1"),
			want: []string{"Pod wait-4/planner-mongodb: no-matching-platform", "no match for platform", "--platforms-from-cluster"}},
		{name: "container exits at once", replace: map[string]string{`      args: ["-config", "/config/defaults.json", "-v", "2"]` + "\n": `      args: ["-no-such-flag"]` + "\n" +
			// Ready only once the planner listens: without a probe the
			// kubelet may report the container Ready in the instant
			// before it exits, and the wait would end there.
			"      readinessProbe: {tcpSocket: {port: 33333}, periodSeconds: 1}\n"},
			want:   []string{"Pod wait-5/planner: crash-loop", "last log lines:", "flag provided but not defined: -no-such-flag"},
			doctor: "crash-loop"},
		// The final image is FROM scratch without /etc/passwd, its USER a
		// name: only the manifest's runAsUser lets it run.
		{name: "image user needs runAsUser (runAsNonRoot)", replace: map[string]string{plannerRunAs: plannerNoRunAs},
			want: []string{"Pod wait-6/planner: image-user-unresolvable", "non-numeric user", "set runAsUser"}},
		{name: "image user needs runAsUser (no /etc/passwd)", replace: map[string]string{"        runAsNonRoot: true\n" + plannerRunAs: plannerNoRunAs},
			want: []string{"Pod wait-7/planner: image-user-unresolvable", "/etc/passwd", "set runAsUser"}},
		{name: "no node can take the Pod", replace: map[string]string{"  serviceAccountName: planner-service-account\n": "  serviceAccountName: planner-service-account\n  nodeSelector: {disktype: nvme}\n"},
			want: []string{"unschedulable", "didn't match Pod's node affinity/selector", "node-role.kubernetes.io/control-plane"}},
		// The deadline leaves the kubelet time to start both containers
		// on a loaded node (8 s was not always enough beside the other
		// packages' tests); the wait costs no CPU.
		{name: "never ready waits until the deadline", timeout: "20s", replace: map[string]string{"      imagePullPolicy: Always\n": "      imagePullPolicy: Always\n      readinessProbe: {tcpSocket: {port: 4444}, periodSeconds: 1}\n"},
			want: []string{"not Ready after 20s", "Pod planner Running", "running but not ready"}, deadline: true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := "wait-" + itoa(i)
			timeout := tc.timeout
			if timeout == "" {
				timeout = "90s"
			}
			r := idopipe(t, tc.env, "deploy", "--image", ref, "-n", ns, "--manifest", fixtureWith(t, ns, tc.replace),
				"--crds", filepath.Join(fixtures, "intents_crds_v1alpha1.yaml"), "--timeout", timeout)
			if r.code != int(fail.NotReady) {
				t.Fatalf("exit %d, want %d:\n%s", r.code, fail.NotReady, r)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			last := lines[len(lines)-1]
			for _, w := range tc.want {
				if !strings.Contains(last, w) {
					t.Errorf("error %q lacks %q", last, w)
				}
			}
			// Not a timing assertion: a cause that waiting cannot fix must
			// not have waited out the deadline.
			if !tc.deadline && strings.Contains(last, "not Ready after") {
				t.Errorf("a non-transient cause waited for the deadline:\n%s", r)
			}
			if tc.doctor != "" {
				d := idopipe(t, nil, "doctor", "-n", ns, "--registry-ca", stack.Registry.CAFile)
				if d.code == 0 || !strings.Contains(d.stdout, tc.doctor) {
					t.Errorf("doctor does not name %q:\n%s", tc.doctor, d)
				}
			}
		})
	}
}

// The planner container's user settings in the fixture manifest (the
// mongodb container has the same lines, followed by other limits).
const (
	plannerRunAs   = "        runAsUser: 10001\n        runAsGroup: 10001\n      resources:\n        limits:\n          memory: \"768Mi\""
	plannerNoRunAs = "      resources:\n        limits:\n          memory: \"768Mi\""
)

// pushPrivate pushes a small image for one platform (in an index, as
// multi-platform images come) to ref, with the stack's registry
// credentials, and returns ref.
func pushPrivate(t *testing.T, ref, arch string) string {
	t.Helper()
	img, err := testenv.PlatformImage("linux", arch, 1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	client, err := stack.Registry.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(ref, stack.Mirror.Host) {
		if client, err = stack.Mirror.HTTPClient(); err != nil {
			t.Fatal(err)
		}
	}
	auth := authn.FromConfig(authn.AuthConfig{Username: stack.Registry.Username, Password: stack.Registry.Password})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := remote.WriteIndex(tag, idx, remote.WithContext(ctx), remote.WithAuth(auth), remote.WithTransport(client.Transport.(*http.Transport))); err != nil {
		t.Fatal(err)
	}
	return ref
}

// TestSilentKubelet: with the node's kubelet stopped (SIGSTOP), a deploy's
// wait names the node and how long since its last heartbeat within
// seconds of the Lease going stale, not at --timeout, before the node
// controller marks the node NotReady.
func TestSilentKubelet(t *testing.T) {
	// Serial: a stopped kubelet stalls every other test's Pods. It sits in
	// the last file so that it runs last of the serial tests, once the
	// kubelet has its heartbeat Lease (PauseKubelet waits for it).
	ref := pushedImage(t)
	const ns = "history-silent-node"
	node := stack.Cluster.Node
	if err := node.PauseKubelet(context.Background()); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := node.ResumeKubelet(); err != nil {
				t.Errorf("resume the kubelet: %v", err)
			}
		}
	}
	t.Cleanup(resume)
	r := idopipe(t, nil, "deploy", "--image", ref, "-n", ns, "--manifest", fixtureWith(t, ns, nil),
		"--crds", fixtures+"/intents_crds_v1alpha1.yaml", "--timeout", "120s")
	took := time.Since(paused)
	resume()
	last := lastLine(r.stderr)
	if r.code != int(fail.NotReady) || !strings.Contains(last, "kubelet-silent") || !strings.Contains(last, "node "+node.Name) || !strings.Contains(last, "has not renewed its heartbeat for") {
		t.Fatalf("deploy onto a node whose kubelet is stopped: exit %d, want %d naming the node:\n%s", r.code, fail.NotReady, r)
	}
	if took > 60*time.Second {
		t.Errorf("named %s after the kubelet stopped", took)
	}
	t.Logf("silent kubelet named %.1fs after SIGSTOP: %s", took.Seconds(), last)
	n, err := stack.Cluster.Client.CoreV1().Nodes().Get(context.Background(), node.Name, metav1.GetOptions{})
	if err == nil {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				t.Logf("node Ready condition when named: %s (%s)", c.Status, c.Reason)
			}
		}
	}
}
