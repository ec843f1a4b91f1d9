package manifest

import (
	"strings"
	"testing"

	"github.com/idopipe/idopipe/pkg/fail"
)

// kubectlList is what `kubectl get sa,cm,pod -n ido -o yaml` writes: one
// document, a v1 List whose items carry what the server maintains.
const kubectlList = `apiVersion: v1
items:
- apiVersion: v1
  kind: ServiceAccount
  metadata:
    creationTimestamp: "2026-11-30T09:12:44Z"
    name: planner-sa
    namespace: ido
    resourceVersion: "1234"
    uid: 0b7c1c9e-6f1a-4b39-9d0e-1b2f3c4d5e6f
- apiVersion: v1
  data:
    config.json: '{"a": 1}'
  kind: ConfigMap
  metadata:
    name: planner-config
    namespace: ido
- apiVersion: v1
  kind: Pod
  metadata:
    labels:
      app: planner
    name: planner
    namespace: ido
  spec:
    containers:
    - image: ghcr.io/o/planner:0.4.0
      name: planner
    serviceAccountName: planner-sa
  status:
    phase: Running
kind: List
metadata:
  resourceVersion: ""
`

func TestDecodeUnwrapsKubectlList(t *testing.T) {
	objs := decode(t, kubectlList)
	want := []string{
		"ServiceAccount/planner-sa (sample.yaml#1.items[0])",
		"ConfigMap/planner-config (sample.yaml#1.items[1])",
		"Pod/planner (sample.yaml#1.items[2])",
	}
	if len(objs) != len(want) {
		t.Fatalf("%d objects, want %d", len(objs), len(want))
	}
	for i, o := range objs {
		if o.Ref() != want[i] {
			t.Errorf("object %d is %s, want %s", i, o.Ref(), want[i])
		}
	}
	// The items are the objects themselves, ready for the transforms.
	out, err := Transform(objs, Options{Namespace: "ido", Images: map[string]string{"planner": "ghcr.io/o/planner:1@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}, PullSecret: "pull", Scoper: scope})
	if err != nil {
		t.Fatal(err)
	}
	if img := out[2].Object["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["image"]; !strings.HasSuffix(img.(string), "@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa") {
		t.Errorf("the Pod of the list runs %v, not the built image", img)
	}
}

// TestDecodeUnwrapsListsAmongDocuments: a list beside other documents,
// a typed core list (PodList), nested lists and an empty list.
func TestDecodeUnwrapsListsAmongDocuments(t *testing.T) {
	objs := decode(t, `apiVersion: v1
kind: Namespace
metadata: {name: ido}
---
apiVersion: v1
kind: PodList
items:
- {apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {containers: [{name: c, image: busybox}]}}
- apiVersion: v1
  kind: List
  items:
  - {apiVersion: v1, kind: Service, metadata: {name: s}}
  - {apiVersion: v1, kind: ServiceList, items: [{apiVersion: v1, kind: Service, metadata: {name: t}}]}
---
apiVersion: v1
kind: List
items: []
---
apiVersion: v1
kind: ServiceList
metadata: {}
`)
	var got []string
	for _, o := range objs {
		got = append(got, o.Ref())
	}
	want := "Namespace/ido (sample.yaml#1) Pod/a (sample.yaml#2.items[0]) Service/s (sample.yaml#2.items[1].items[0]) Service/t (sample.yaml#2.items[1].items[1].items[0])"
	if strings.Join(got, " ") != want {
		t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, " "), want)
	}
}

// TestDecodeListErrors: an item that is not an object, or lacks its
// apiVersion, kind or name, is named by its place in the list.
func TestDecodeListErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"apiVersion: v1\nkind: List\nitems:\n- {kind: Pod, metadata: {name: a}}\n",
			"manifest l.yaml#1.items[0] has no apiVersion: add apiVersion"},
		{"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: a}}\n- {apiVersion: v1, metadata: {name: b}}\n",
			"manifest l.yaml#1.items[1] has no kind: add kind"},
		{"apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: List\n  items: [{apiVersion: v1, kind: Pod, metadata: {}}]\n",
			"manifest l.yaml#1.items[0].items[0] (Pod) has no metadata.name: add metadata.name"},
		{"apiVersion: v1\nkind: List\nitems:\n- just a string\n",
			"manifest l.yaml#1.items[0] (in List) is not an object: make each item an object with apiVersion, kind and metadata"},
		{"apiVersion: v1\nkind: List\nitems: {a: b}\n",
			"manifest l.yaml#1 (List) has items that are not a list: make items a list of objects"},
		{"apiVersion: v1\nkind: List\nitems: []\n",
			"manifest l.yaml holds no objects: check the --manifest path"},
		{"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
			"l.yaml#2 declares ConfigMap/a again (first at l.yaml#1.items[0]): remove one of them"},
	} {
		_, err := Decode("l.yaml", []byte(tc.doc))
		if fail.ClassOf(err) != fail.Manifest || err.Error() != tc.want {
			t.Errorf("got %s %v\nwant %q", fail.ClassOf(err), err, tc.want)
		}
	}
}

// TestDecodeCustomListKind: a custom resource whose kind ends in List is
// an object, not a list.
func TestDecodeCustomListKind(t *testing.T) {
	objs := decode(t, "apiVersion: ido.intel.com/v1alpha1\nkind: AllowList\nmetadata: {name: a}\nitems: [x, y]\n")
	if len(objs) != 1 || objs[0].Ref() != "AllowList/a (sample.yaml#1)" {
		t.Errorf("got %v", objs)
	}
}
