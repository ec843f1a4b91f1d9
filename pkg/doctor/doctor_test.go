package doctor

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/fail"
)

// These run the checklist against client-go's fake clientset: what the
// checks conclude from the objects, without a cluster. The registry pull
// check needs the Secret's credentials, so it does not run here (the end
// to end TestDoctor covers it).

func TestMissingNamespace(t *testing.T) {
	checks, err := Run(context.Background(), &cluster.Client{Core: fake.NewClientset()}, Options{Namespace: "nope", SecretName: "ghcr-secret"})
	if len(checks) != 1 || checks[0].OK || !strings.HasPrefix(checks[0].String(), "✗ namespace nope exists: ") {
		t.Fatalf("checks %v", checks)
	}
	if fail.ClassOf(err) != fail.Cluster || !apierrors.IsNotFound(err) {
		t.Errorf("error %v: class %s, want cluster with the API's NotFound as cause", err, fail.ClassOf(err))
	}
}

// TestBrokenPull: the Secret is missing, the ServiceAccount does not list
// it, and the Pod waits in ImagePullBackOff: each is a ✗ line, the Pod's
// with the cause Wait would name, its events and its log.
func TestBrokenPull(t *testing.T) {
	const ns = "ido"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "planner", Namespace: ns},
		Spec:       corev1.PodSpec{ServiceAccountName: "planner-sa", Containers: []corev1.Container{{Name: "planner", Image: "ghcr.io/o/planner:1"}, {Name: "db", Image: "mongo:6"}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "planner",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image"}}}}},
	}
	event := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "planner.1", Namespace: ns},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "planner", Namespace: ns},
		Reason:         "Failed", Message: "Failed to pull image: 401 Unauthorized", LastTimestamp: metav1.NewTime(time.Now())}
	core := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "planner-sa", Namespace: ns}},
		pod, event)
	checks, err := Run(context.Background(), &cluster.Client{Core: core}, Options{Namespace: ns, SecretName: "ghcr-secret"})
	var lines []string
	for _, c := range checks {
		lines = append(lines, c.String())
	}
	out := strings.Join(lines, "\n")
	for _, want := range []string{
		"✓ namespace ido exists",
		"✗ Secret ghcr-secret exists, has type kubernetes.io/dockerconfigjson and an entry for ghcr.io: the cluster has no pull Secret ido/ghcr-secret",
		"✗ ServiceAccount planner-sa of Pod planner references ghcr-secret: its imagePullSecrets are empty",
		"✗ Pod planner Ready: Pending: pull-secret-not-on-serviceaccount (",
		"event Failed: Failed to pull image: 401 Unauthorized",
		"log: fake logs",
		"fix: add imagePullSecrets: [{name: ghcr-secret}] to ServiceAccount planner-sa",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the checklist does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "pullable") {
		t.Errorf("a pull check ran without credentials:\n%s", out)
	}
	if fail.ClassOf(err) != fail.Credentials || !apierrors.IsNotFound(err) {
		t.Errorf("error %v: class %s, want credentials with the Secret's NotFound as cause", err, fail.ClassOf(err))
	}
}

// TestNoPrivateImage: no Pod runs an image from a private registry.
func TestNoPrivateImage(t *testing.T) {
	core := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ido"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ido"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "mongo:6"}}}})
	checks, err := Run(context.Background(), &cluster.Client{Core: core}, Options{Namespace: "ido", SecretName: "s"})
	if fail.ClassOf(err) != fail.Cluster || len(checks) != 2 || !strings.Contains(checks[1].String(), "no Pod in ido runs an image from a private registry") {
		t.Errorf("checks %v, err %v", checks, err)
	}
	if _, err := Run(context.Background(), &cluster.Client{Core: core}, Options{Namespace: "ido", SecretName: "s", Image: "Not A Ref"}); fail.ClassOf(err) != fail.Usage {
		t.Errorf("an invalid --image: %v", err)
	}
}
