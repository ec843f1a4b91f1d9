package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

// TestManifestAsList: the fixture manifest as kubectl get -o yaml writes
// it, one `kind: List` whose items are the objects (a ConfigMapList among
// them), is unwrapped like kubectl apply does: the release applies every
// item and the Pods run.
func TestManifestAsList(t *testing.T) {
	t.Parallel()
	const ns = "as-list"
	f, err := os.Open(manifestFor(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var items []any
	var configMaps []any
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			break
		}
		if len(obj) == 0 {
			continue
		}
		if obj["kind"] == "ConfigMap" {
			configMaps = append(configMaps, obj)
			continue
		}
		items = append(items, obj)
	}
	if len(configMaps) > 0 {
		items = append(items, map[string]any{"apiVersion": "v1", "kind": "ConfigMapList", "items": configMaps})
	}
	list := map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]any{"resourceVersion": ""}, "items": items}
	b, err := sigsyaml.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "list.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}

	diff := idopipe(t, nil, releaseWith(ns, p, "--dry-run")...)
	if diff.code != 0 || strings.Contains(diff.stdout, "has no metadata") {
		t.Fatalf("release --dry-run of a List:\n%s", diff)
	}
	r := idopipe(t, nil, releaseWith(ns, p, "-o", "json")...)
	if r.code != 0 {
		t.Fatalf("release of a List:\n%s", r)
	}
	res := parseRelease(t, r).Result
	want := len(items) - 1 + len(configMaps) // the ConfigMapList is its items
	applied := 0
	for _, o := range res.Objects {
		if !strings.HasPrefix(o.Ref, "Secret/") && !strings.HasPrefix(o.Ref, "CustomResourceDefinition/") {
			applied++
		}
	}
	if applied != want {
		t.Errorf("%d objects applied from the List, want %d: %+v", applied, want, res.Objects)
	}
	ready := 0
	for _, pod := range res.Pods {
		if pod.Ready {
			ready++
		}
	}
	if ready == 0 || ready != len(res.Pods) {
		t.Errorf("Pods of the List not Ready: %+v", res.Pods)
	}
}
