package manifest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// The repository's own IDO-shaped fixtures (testdata/ido) stand in for the
// upstream IDO 0.4.0 files in every test and in make demo. This test holds
// them to that: when the optional upstream folder is present beside the
// checkout, both declare the same objects with the same API versions,
// ports, RBAC rules, securityContexts, affinity and tolerations, and the
// same CRDs with the same names, scope, versions and schema fields.

const upstreamFixtures = "../../../shared/fixtures/ido" // optional: skipped when absent

func upstreamOrSkip(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(upstreamFixtures, "manifest-0.4.0.yaml")); err != nil {
		t.Skip("skipped: the optional upstream IDO fixtures folder ../shared/fixtures/ido is not present beside the checkout")
	}
	return upstreamFixtures
}

func readFixture(t *testing.T, dir, file string) map[string]Object {
	t.Helper()
	objs, err := ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]Object{}
	for _, o := range objs {
		m[o.GetAPIVersion()+" "+o.GetKind()+"/"+o.GetName()] = o
	}
	return m
}

// field reads a nested value as JSON-comparable data.
func field(t *testing.T, o Object, path ...string) any {
	t.Helper()
	var v any = o.Object
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

func TestFixtureMatchesUpstream(t *testing.T) {
	up := upstreamOrSkip(t)
	ours := readFixture(t, "../../testdata/ido", "manifest-0.4.0.yaml")
	theirs := readFixture(t, up, "manifest-0.4.0.yaml")
	if len(ours) != len(theirs) {
		t.Errorf("testdata/ido declares %d objects, upstream %d", len(ours), len(theirs))
	}
	for id, u := range theirs {
		o, ok := ours[id]
		if !ok {
			t.Errorf("testdata/ido lacks %s", id)
			continue
		}
		same := [][]string{{"metadata", "namespace"}, {"metadata", "labels"}, {"rules"}, {"subjects"}, {"roleRef"},
			{"spec", "ports"}, {"spec", "selector"}, {"spec", "serviceAccountName"}, {"spec", "affinity"}, {"spec", "tolerations"}}
		for _, p := range same {
			if a, b := field(t, o, p...), field(t, u, p...); !reflect.DeepEqual(a, b) {
				t.Errorf("%s %v: testdata/ido has %v, upstream %v", id, p, a, b)
			}
		}
		oc, _ := field(t, o, "spec", "containers").([]any)
		uc, _ := field(t, u, "spec", "containers").([]any)
		if len(oc) != len(uc) {
			t.Errorf("%s: %d containers, upstream %d", id, len(oc), len(uc))
			continue
		}
		for i := range uc {
			a, b := oc[i].(map[string]any), uc[i].(map[string]any)
			for _, k := range []string{"name", "image", "ports", "securityContext", "imagePullPolicy", "args", "volumeMounts"} {
				if !reflect.DeepEqual(a[k], b[k]) {
					t.Errorf("%s container %d %s: testdata/ido has %v, upstream %v", id, i, k, a[k], b[k])
				}
			}
		}
	}
	cOurs := readFixture(t, "../../testdata/ido", "intents_crds_v1alpha1.yaml")
	cTheirs := readFixture(t, up, "intents_crds_v1alpha1.yaml")
	for id, u := range cTheirs {
		o, ok := cOurs[id]
		if !ok {
			t.Errorf("testdata/ido lacks %s", id)
			continue
		}
		for _, p := range [][]string{{"spec", "group"}, {"spec", "scope"}, {"spec", "names"}} {
			if a, b := field(t, o, p...), field(t, u, p...); !reflect.DeepEqual(a, b) {
				t.Errorf("%s %v: testdata/ido has %v, upstream %v", id, p, a, b)
			}
		}
		ov, _ := field(t, o, "spec", "versions").([]any)
		uv, _ := field(t, u, "spec", "versions").([]any)
		if len(ov) != len(uv) {
			t.Fatalf("%s: %d versions, upstream %d", id, len(ov), len(uv))
		}
		for i := range uv {
			a, b := ov[i].(map[string]any), uv[i].(map[string]any)
			for _, k := range []string{"name", "served", "storage", "subresources"} {
				if !reflect.DeepEqual(a[k], b[k]) {
					t.Errorf("%s version %d %s: testdata/ido has %v, upstream %v", id, i, k, a[k], b[k])
				}
			}
			if a, b := schemaShape(a["schema"]), schemaShape(b["schema"]); !reflect.DeepEqual(a, b) {
				t.Errorf("%s version %d schema: testdata/ido has %v, upstream %v", id, i, a, b)
			}
		}
	}
}

// schemaShape keeps what a schema requires of objects (types, required,
// enums, defaults, bounds, formats) and drops descriptions.
func schemaShape(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if k == "description" {
				continue
			}
			out[k] = schemaShape(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = schemaShape(e)
		}
		return out
	}
	return v
}
