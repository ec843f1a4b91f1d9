package manifest

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Microbenchmarks of the manifest path a release takes: decode the upstream
// manifest, transform it (namespace, image, pull Secret), order it. They
// guard against regressions; `make bench` records their figures. No timing
// is asserted.
//
//	go test -run XXX -bench . -benchmem ./pkg/manifest

// benchScoper answers like the API server's RESTMapper for the IDO kinds.
var benchScoper = ScoperFunc(func(gvk schema.GroupVersionKind) (bool, error) {
	switch gvk.Kind {
	case "ClusterRole", "ClusterRoleBinding", "Namespace", "CustomResourceDefinition":
		return false, nil
	}
	return true, nil
})

// benchInput is the upstream IDO 0.4.0 manifest when the shared fixtures sit
// beside the checkout, else a small manifest of the same shape.
func benchInput(b *testing.B) (string, []byte) {
	b.Helper()
	p := filepath.Join("..", "..", "..", "shared", "fixtures", "ido", "manifest-0.4.0.yaml")
	if data, err := os.ReadFile(p); err == nil {
		return "manifest-0.4.0.yaml", data
	}
	return "bench.yaml", []byte(benchFallback)
}

const benchFallback = `
apiVersion: v1
kind: ConfigMap
metadata: {name: planner-configmap}
data: {defaults.json: "{}"}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: planner-service-account}
---
kind: ClusterRole
apiVersion: rbac.authorization.k8s.io/v1
metadata: {name: planner-role}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: planner-role-binding, namespace: ido}
subjects: [{kind: ServiceAccount, name: planner-service-account, namespace: ido}]
roleRef: {kind: ClusterRole, name: planner-role, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: v1
kind: Pod
metadata: {name: planner-mongodb, labels: {name: planner-mongodb}}
spec:
  containers: [{name: mongo, image: "mongo:6", ports: [{containerPort: 27017}]}]
---
apiVersion: v1
kind: Service
metadata: {name: planner-mongodb-service}
spec: {selector: {name: planner-mongodb}, ports: [{port: 27017}]}
---
apiVersion: v1
kind: Pod
metadata: {name: planner, labels: {name: planner}}
spec:
  serviceAccountName: planner-service-account
  containers: [{name: planner, image: "127.0.0.1:5000/planner:0.4.0", args: [-config, /config/defaults.json]}]
`

var benchOptions = Options{
	Namespace:  "ido",
	Images:     map[string]string{"planner": "ghcr.io/my-org/planner:0.4.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
	PullSecret: "ghcr-secret",
	Scoper:     benchScoper,
}

func BenchmarkDecode(b *testing.B) {
	name, data := benchInput(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(name, data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTransform(b *testing.B) {
	name, data := benchInput(b)
	objs, err := Decode(name, data)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Transform(objs, benchOptions); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeTransformOrder is all a release does with a manifest
// before it talks to the cluster.
func BenchmarkDecodeTransformOrder(b *testing.B) {
	name, data := benchInput(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		objs, err := Decode(name, data)
		if err != nil {
			b.Fatal(err)
		}
		out, err := Transform(objs, benchOptions)
		if err != nil {
			b.Fatal(err)
		}
		if len(Pods(Order(out))) == 0 {
			b.Fatal("no Pods")
		}
	}
}
