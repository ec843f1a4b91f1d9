package build_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/publish"
)

// TestBuildAll: the planner and an actuator plugin image, each with its own
// Dockerfile, name and tag, build concurrently on one client into one OCI
// layout; both share the busybox layer, so their exports write the same
// blob at once. Each result has its own digest, findable by name:version.
func TestBuildAll(t *testing.T) {
	testenv.NeedStack(t)
	planner := plannerSource(t)
	actuator := writeFiles(t, map[string]string{
		"Dockerfile": "FROM busybox\nCOPY plugin.sh /plugin.sh\nRUN chmod 0755 /plugin.sh\nENTRYPOINT [\"/plugin.sh\"]\n",
		"plugin.sh":  "#!/bin/sh\necho actuator\n",
	})
	shared := filepath.Join(t.TempDir(), "oci")
	specs := []build.Spec{spec(t, planner), spec(t, actuator), spec(t, actuator)}
	specs[0].Name, specs[0].Version = "planner", "0.4.0"
	specs[1].Name, specs[1].Version = "rmpa-actuator", "0.4.0"
	specs[2].Name, specs[2].Version = "rmpa-actuator", "0.4.0-labelled"
	specs[2].Platforms = []string{"linux/amd64"}
	specs[2].Labels = map[string]string{"variant": "second"}
	for i := range specs {
		specs[i].Layout = shared
		specs[i].SourceDateEpoch = "1700000000"
	}
	var p progress
	results, err := build.BuildAll(context.Background(), specs, p.opts()...)
	if err != nil {
		t.Fatalf("BuildAll: %v\n%s", err, p.String())
	}
	if len(results) != len(specs) {
		t.Fatalf("%d results for %d specs", len(results), len(specs))
	}
	digests := map[string]bool{}
	for i, r := range results {
		if r.Ref != specs[i].Name+":"+specs[i].Version || r.Layout != shared {
			t.Errorf("result %d is %s in %s, want %s:%s", i, r.Ref, r.Layout, specs[i].Name, specs[i].Version)
		}
		digests[r.Digest] = true
		// publish finds each by name, as `idopipe push` after `idopipe build` does.
		d, err := publish.Latest(shared, r.Ref)
		if err != nil || d != r.Digest {
			t.Errorf("%s in the layout: %s, %v; want %s", r.Ref, d, err, r.Digest)
		}
		if _, err := publish.Load(shared, r.Digest); err != nil {
			t.Errorf("%s: %v", r.Ref, err)
		}
	}
	if len(digests) != 3 {
		t.Errorf("digests %v, want three different images", digests)
	}
	lp, err := layout.FromPath(shared)
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := lp.ImageIndex()
	m, _ := idx.IndexManifest()
	if len(m.Manifests) != 3 {
		t.Errorf("index.json lists %d images, want 3", len(m.Manifests))
	}

	// A failing image fails the whole run, with that image's error.
	bad := writeFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN exit 3\n"})
	specs = []build.Spec{spec(t, planner), spec(t, bad)}
	specs[1].Name = "broken"
	_, err = build.BuildAll(context.Background(), specs, p.opts()...)
	if err == nil || !contains(err.Error(), "build of broken:1.0.0 failed at step", "exit code: 3") {
		t.Errorf("BuildAll with a failing image: %v", err)
	}
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
