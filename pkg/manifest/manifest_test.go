package manifest

import (
	"errors"
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/idopipe/idopipe/pkg/fail"
)

// scope is a test Scoper; in a release the API server's RESTMapper answers.
var scope = ScoperFunc(func(gvk schema.GroupVersionKind) (bool, error) {
	switch gvk.Kind {
	case "ClusterRole", "ClusterRoleBinding", "Namespace", "CustomResourceDefinition":
		return false, nil
	case "Gadget":
		return false, fail.New(fail.Manifest, "apply its CRD", "the cluster does not serve kind Gadget")
	}
	return true, nil
})

const sample = `
apiVersion: v1
kind: ServiceAccount
metadata: {name: planner-sa}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: b, namespace: wrong}
subjects: [{kind: ServiceAccount, name: planner-sa, namespace: ido}, {kind: User, name: u}]
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: r}
---
apiVersion: v1
kind: Pod
metadata: {name: planner}
spec:
  serviceAccountName: planner-sa
  containers: [{name: planner, image: "127.0.0.1:5000/planner:0.4.0"}, {name: side, image: busybox}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  template:
    spec:
      initContainers: [{name: init, image: ghcr.io/x/planner:old}]
      containers: [{name: m, image: mongo:6}]
---
# an empty document is skipped
`

func decode(t *testing.T, s string) []Object {
	t.Helper()
	objs, err := Decode("sample.yaml", []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestTransform(t *testing.T) {
	in := decode(t, sample)
	out, err := Transform(in, Options{Namespace: "prod", Images: map[string]string{"planner": "ghcr.io/o/planner:1@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}, PullSecret: "pull", Scoper: scope})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 4 {
		t.Fatalf("%d objects", len(out))
	}
	sa, crb, pod, dep := out[0], out[1], out[2], out[3]
	if sa.GetNamespace() != "prod" || pod.GetNamespace() != "prod" || dep.GetNamespace() != "prod" {
		t.Errorf("namespaced objects not in prod: %s %s %s", sa.GetNamespace(), pod.GetNamespace(), dep.GetNamespace())
	}
	if crb.GetNamespace() != "" {
		t.Errorf("cluster-scoped binding keeps namespace %q", crb.GetNamespace())
	}
	subjects, _, _ := unstructured.NestedSlice(crb.Object, "subjects")
	if subjects[0].(map[string]any)["namespace"] != "prod" || subjects[1].(map[string]any)["namespace"] != nil {
		t.Errorf("subjects %v: the ServiceAccount should point at prod, the User untouched", subjects)
	}
	containers, _, _ := unstructured.NestedSlice(pod.Object, "spec", "containers")
	if img := containers[0].(map[string]any)["image"]; img != "ghcr.io/o/planner:1@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
		t.Errorf("planner image %v", img)
	}
	if img := containers[1].(map[string]any)["image"]; img != "busybox" {
		t.Errorf("other image changed to %v", img)
	}
	secrets, _, _ := unstructured.NestedSlice(sa.Object, "imagePullSecrets")
	if len(secrets) != 1 || secrets[0].(map[string]any)["name"] != "pull" {
		t.Errorf("ServiceAccount imagePullSecrets %v", secrets)
	}
	if _, found, _ := unstructured.NestedSlice(pod.Object, "spec", "imagePullSecrets"); found {
		t.Error("the Pod got imagePullSecrets although its ServiceAccount carries them")
	}
	// The Deployment's init container runs the image with the default
	// ServiceAccount, which the manifest does not declare: the pod template
	// gets the secret itself.
	inits, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "initContainers")
	if inits[0].(map[string]any)["image"] != "ghcr.io/o/planner:1@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
		t.Errorf("init container image %v", inits[0])
	}
	ps, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "imagePullSecrets")
	if len(ps) != 1 {
		t.Errorf("Deployment template imagePullSecrets %v", ps)
	}
	// The input is not modified.
	if in[2].GetNamespace() != "" || in[1].GetNamespace() != "wrong" {
		t.Error("Transform changed its input")
	}
	// Idempotent: transforming the output again changes nothing.
	again, err := Transform(out, Options{Namespace: "prod", Images: map[string]string{"planner": "ghcr.io/o/planner:1@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}, PullSecret: "pull", Scoper: scope})
	if err != nil {
		t.Fatal(err)
	}
	for i := range out {
		if !equal(out[i].Object, again[i].Object) {
			t.Errorf("second transform changed %s", out[i].Ref())
		}
	}
}

func equal(a, b map[string]any) bool {
	return (&unstructured.Unstructured{Object: a}).GetResourceVersion() == (&unstructured.Unstructured{Object: b}).GetResourceVersion() &&
		strings.EqualFold(toJSON(a), toJSON(b))
}

func toJSON(m map[string]any) string {
	b, _ := (&unstructured.Unstructured{Object: m}).MarshalJSON()
	return string(b)
}

func TestTransformErrors(t *testing.T) {
	cases := []struct {
		name, doc, want string
		images          map[string]string
	}{
		{"other namespace", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: other}\n", `sets namespace "other" but the release targets "prod"`, nil},
		{"image not run", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: mongo:6}]}\n", `no container in the manifest runs an image named "planner"`, map[string]string{"planner": "x"}},
		{"invalid image", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: 'UPPER/Case:'}]}\n", `invalid image "UPPER/Case:"`, nil},
		{"unknown kind", "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\n", "sample.yaml#1: the cluster does not serve kind Gadget", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Transform(decode(t, tc.doc), Options{Namespace: "prod", Images: tc.images, Scoper: scope})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if fail.ClassOf(err) != fail.Manifest {
				t.Errorf("class %s, want manifest", fail.ClassOf(err))
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"malformed YAML", "kind: [", "sample.yaml#1 is not valid YAML"},
		{"no kind", "apiVersion: v1\nmetadata: {name: x}\n", "sample.yaml#1 has no kind"},
		{"no apiVersion", "kind: Pod\nmetadata: {name: x}\n", "sample.yaml#1 has no apiVersion"},
		{"no name", "apiVersion: v1\nkind: Pod\nmetadata: {}\n", "has no metadata.name"},
		{"generateName", "apiVersion: v1\nkind: Pod\nmetadata: {generateName: x-}\n", "uses generateName"},
		{"no metadata", "apiVersion: v1\nkind: Pod\n", "has no metadata"},
		{"duplicate", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", "sample.yaml#2 declares Pod/x again (first at sample.yaml#1)"},
		{"empty", "---\n# nothing\n", "holds no objects"},
		{"not UTF-8", "apiVersion: v1\nkind: Pod\nmetadata: {name: \xff}\n", "is not valid UTF-8"},
		{"name read as a boolean", "apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n", "metadata.name that is not a string: false"},
		{"kind not a string", "apiVersion: v1\nkind: 3\nmetadata: {name: x}\n", "has no kind"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode("sample.yaml", []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			var fe *fail.Error
			if !errors.As(err, &fe) || fe.Class != fail.Manifest || strings.Contains(err.Error(), "\n") {
				t.Errorf("want a one-line manifest error, got %q", err)
			}
		})
	}
}

func TestOrder(t *testing.T) {
	objs := decode(t, `
apiVersion: v1
kind: Pod
metadata: {name: p}
---
apiVersion: v1
kind: Service
metadata: {name: s}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: r}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: sa}
---
apiVersion: v1
kind: Namespace
metadata: {name: ns}
`)
	var kinds []string
	for _, o := range Order(objs) {
		kinds = append(kinds, o.GetKind())
	}
	if got := strings.Join(kinds, ","); got != "Namespace,ServiceAccount,ClusterRole,ConfigMap,Service,Pod" {
		t.Errorf("order %s", got)
	}
	if got := Pods(objs); len(got) != 1 || got[0] != "p" {
		t.Errorf("Pods %v", got)
	}
}

func FuzzDecodeTransform(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: planner}]}\n"))
	f.Add([]byte("{\"apiVersion\":\"v1\",\"kind\":\"List\",\"metadata\":{\"name\":\"x\"}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Decode("fuzz.yaml", data)
		if err != nil {
			if fail.ClassOf(err) != fail.Manifest || strings.ContainsAny(err.Error(), "\n") {
				t.Fatalf("decode error is not a one-line manifest error: %q", err)
			}
			return
		}
		_, _ = Transform(objs, Options{Namespace: "ido", Images: map[string]string{"planner": "ghcr.io/o/planner:1"}, PullSecret: "s", Scoper: scope})
	})
}

func TestDocumentLine(t *testing.T) {
	p := t.TempDir() + "/m.yaml"
	if err := os.WriteFile(p, []byte("a: 1\n---\nb: 2\nc: 3\n---\n\nd: 4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for doc, want := range map[int]int{1: 1, 2: 3, 3: 6} {
		if got := DocumentLine(p, doc); got != want {
			t.Errorf("document %d starts at line %d, want %d", doc, got, want)
		}
	}
}
