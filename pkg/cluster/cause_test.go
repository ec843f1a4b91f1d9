package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
)

func pullSecret(data string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(data)}}
}

// TestPullCredentialsKeepCause: the Secret's refusals keep their message
// and the error behind it (the API's NotFound, the JSON or base64 error).
func TestPullCredentialsKeepCause(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		secret *corev1.Secret
		msg    string
		cause  func(error) bool
	}{
		{"missing", nil, "the cluster has no pull Secret ns/s: create it with `idopipe deploy` or `idopipe release`", apierrors.IsNotFound},
		{"not JSON", pullSecret("{"), "Secret ns/s holds no valid .dockerconfigjson: recreate it",
			func(err error) bool { var se *json.SyntaxError; return errors.As(err, &se) }},
		{"bad auth", pullSecret(`{"auths":{"ghcr.io":{"auth":"%%%"}}}`), "Secret ns/s has a malformed auth entry for ghcr.io: recreate it",
			func(err error) bool { var ce base64.CorruptInputError; return errors.As(err, &ce) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core := fake.NewClientset()
			if tc.secret != nil {
				core = fake.NewClientset(tc.secret)
			}
			_, err := (&Client{Core: core}).PullCredentials(ctx, "ns", "s", "ghcr.io")
			if fail.ClassOf(err) != fail.Credentials || err.Error() != tc.msg {
				t.Errorf("got %s %q, want credentials %q", fail.ClassOf(err), err, tc.msg)
			}
			if !tc.cause(err) {
				t.Errorf("%v: the cause is lost", err)
			}
		})
	}
}

func TestInventoryKeepsCause(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: InventoryName, Namespace: "ns"}, Data: map[string]string{inventoryKey: "not json"}}
	_, err := (&Client{Core: fake.NewClientset(cm)}).Inventory(context.Background(), "ns")
	var se *json.SyntaxError
	if err == nil || err.Error() != "ConfigMap ns/idopipe-inventory is not an idopipe inventory: delete it; the next release writes it anew (nothing will be pruned once)" || !errors.As(err, &se) {
		t.Errorf("got %v", err)
	}
}

// TestExplainObjectKeepsCause: the API server's verdict stays the cause
// (apierrors.IsInvalid works on what the pipeline gets).
func TestExplainObjectKeepsCause(t *testing.T) {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("v1")
	u.SetKind("Pod")
	u.SetName("p")
	obj := manifest.Object{Unstructured: u, Source: "m.yaml#2"}
	invalid := apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, "p", field.ErrorList{field.Required(field.NewPath("spec", "containers"), "")})
	err := (&Client{}).explainObject(context.Background(), invalid, obj, "Pod/ns/p", true)
	if want := "the API server rejected Pod/ns/p: spec.containers: Required value: fix m.yaml#2"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if fail.ClassOf(err) != fail.Manifest || !apierrors.IsInvalid(err) {
		t.Errorf("class %s, invalid %v", fail.ClassOf(err), apierrors.IsInvalid(err))
	}
}

// TestMappingKeepsCause: a kind the cluster does not serve keeps the
// mapper's NoKindMatchError.
func TestMappingKeepsCause(t *testing.T) {
	c := &Client{Mapper: resettable{meta.NewDefaultRESTMapper(nil)}}
	_, err := c.Namespaced(schema.GroupVersionKind{Group: "x.io", Version: "v1", Kind: "Gadget"})
	if want := "the cluster does not serve kind Gadget in x.io/v1: apply its CustomResourceDefinition first (--crds FILE), or fix apiVersion/kind"; err == nil || err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if !meta.IsNoMatchError(err) {
		t.Errorf("%v: the NoKindMatchError is lost", err)
	}
}

type resettable struct{ meta.RESTMapper }

func (resettable) Reset() {}
