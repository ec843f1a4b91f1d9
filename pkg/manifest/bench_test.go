package manifest

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Microbenchmarks of the manifest path a release takes: decode the IDO
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

// benchInput is idopipe's own IDO-shaped manifest (testdata/ido), which
// declares the same objects as the upstream IDO 0.4.0 one.
func benchInput(b *testing.B) (string, []byte) {
	b.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "ido", "manifest-0.4.0.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	return "manifest-0.4.0.yaml", data
}

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
