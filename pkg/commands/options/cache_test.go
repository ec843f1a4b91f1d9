package options

import (
	"strings"
	"testing"

	"github.com/idopipe/idopipe/pkg/build"
)

// TestDefaultCache: a build on a kube:// builder that names no cache
// imports and exports the registry cache beside each image (the GitHub
// Action's ref, the owner lowercased), the export in mode=max and not
// failing the build; any cache flag, --no-cache, another builder or no
// owner leave the specs as they are, and the returned line says which.
func TestDefaultCache(t *testing.T) {
	specs := func(o *BuildOptions) []build.Spec {
		o.Context = "/src"
		o.Extras = []string{"name=helper,source=/src/helper"}
		s, err := o.Specs(ImageOptions{Name: "planner", Version: "1"}, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	o := &BuildOptions{}
	s := specs(o)
	note := o.DefaultCache(s, true, "ghcr.io", "My-Org")
	for i, name := range []string{"planner", "helper"} {
		ref := "ghcr.io/my-org/" + name + ":buildcache"
		if got := strings.Join(s[i].CacheFrom, " "); got != "type=registry,ref="+ref {
			t.Errorf("%s: cache-from %q", name, got)
		}
		if got := strings.Join(s[i].CacheTo, " "); got != "type=registry,ref="+ref+",mode=max,ignore-error=true" {
			t.Errorf("%s: cache-to %q", name, got)
		}
		if !strings.Contains(note, ref) {
			t.Errorf("the note does not name %s: %q", ref, note)
		}
		// The credentials go to the cache's host (the registry's, here).
		if h := build.CacheHosts(s[i]); len(h) != 1 || h[0] != "ghcr.io" {
			t.Errorf("%s: cache hosts %v", name, h)
		}
	}
	if !strings.Contains(note, "--cache-to none") || !strings.Contains(note, "mode=max") {
		t.Errorf("note %q does not say how to turn it off", note)
	}
	if ref := CacheRef("127.0.0.1:5000", "IDO-Test", "planner"); ref != "127.0.0.1:5000/ido-test/planner:buildcache" {
		t.Errorf("CacheRef %s", ref)
	}

	for _, tc := range []struct {
		name      string
		o         BuildOptions
		inCluster bool
		owner     string
		from, to  string // the main image's lists after DefaultCache
		note      string // "" for none
	}{
		{"local daemon", BuildOptions{}, false, "my-org", "", "", ""},
		{"no-cache", BuildOptions{NoCache: true}, true, "my-org", "", "", ""},
		{"cache-to none", BuildOptions{CacheTo: []string{"none"}}, true, "my-org", "", "", ""},
		{"cache-from none", BuildOptions{CacheFrom: []string{"none"}}, true, "my-org", "", "", ""},
		{"import only", BuildOptions{CacheFrom: []string{"type=registry,ref=r.io/o/p:main"}, CacheTo: []string{"none"}}, true, "my-org", "type=registry,ref=r.io/o/p:main", "", ""},
		{"own export", BuildOptions{CacheTo: []string{"type=local,dest=/tmp/c"}}, true, "my-org", "", "type=local,dest=/tmp/c", ""},
		{"no owner", BuildOptions{}, true, "", "", "", "no owner is given"},
	} {
		s := specs(&tc.o)
		note := tc.o.DefaultCache(s, tc.inCluster, "ghcr.io", tc.owner)
		if got := strings.Join(s[0].CacheFrom, " "); got != tc.from {
			t.Errorf("%s: cache-from %q, want %q", tc.name, got, tc.from)
		}
		if got := strings.Join(s[0].CacheTo, " "); got != tc.to {
			t.Errorf("%s: cache-to %q, want %q", tc.name, got, tc.to)
		}
		if len(s[1].CacheFrom)+len(s[1].CacheTo) != 0 {
			t.Errorf("%s: the extra image got a cache: %v %v", tc.name, s[1].CacheFrom, s[1].CacheTo)
		}
		if tc.note == "" && note != "" || !strings.Contains(note, tc.note) {
			t.Errorf("%s: note %q, want %q", tc.name, note, tc.note)
		}
	}
}

// TestCacheNoneRefused: none beside a cache in the same flag is refused,
// naming the other value; none alone passes on any builder.
func TestCacheNoneRefused(t *testing.T) {
	img := ImageOptions{Name: "planner", Version: "1"}
	o := BuildOptions{Provenance: "false", CacheTo: []string{"none", "type=local,dest=/tmp/c"}}
	usage(t, o.Validate(img), "--cache-to none means no cache, but --cache-to type=local,dest=/tmp/c names one too")
	o = BuildOptions{Provenance: "false", CacheFrom: []string{"r.io/o/p:buildcache", "none"}}
	usage(t, o.Validate(img), "--cache-from none means no cache")
	o = BuildOptions{Provenance: "false", CacheFrom: []string{"none"}, CacheTo: []string{"none"}}
	if err := o.Validate(img); err != nil {
		t.Errorf("none alone: %v", err)
	}
}
