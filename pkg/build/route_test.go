package build_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/buildkit/client/ociindex"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/fail"
)

// namedDialer is a unixDialer to the stack's buildkitd under a name of its
// own: one "builder" of a router.
type namedDialer struct {
	unixDialer
	name string
}

func (d *namedDialer) String() string { return d.name }

// router routes each platform to the builder named for it; err fails the
// routing; asked records what it was asked.
type router struct {
	unixDialer
	builders map[string]*namedDialer
	err      error
	asked    [][]string
}

func (r *router) String() string { return "test://set" }

func (r *router) Route(_ context.Context, platforms []string) ([]build.Dialer, error) {
	r.asked = append(r.asked, platforms)
	if r.err != nil {
		return nil, r.err
	}
	var out []build.Dialer
	for _, p := range platforms {
		out = append(out, r.builders[p])
	}
	return out, nil
}

// TestPlatformRouter: a multi-platform build on a PlatformRouter solves
// each platform on its own builder and joins the platform images and
// their provenance into one index under the image's name; the result says
// which builder built each platform. A routing error stops the build
// before any connection.
func TestPlatformRouter(t *testing.T) {
	testenv.NeedStack(t)
	// Both "builders" are the stack's one buildkitd: a step alike for both
	// platforms would be one vertex, shown once; TARGETARCH makes two.
	dir := writeFiles(t, map[string]string{"Dockerfile": "FROM scratch\nARG TARGETARCH\nCOPY Dockerfile /Dockerfile-$TARGETARCH\n"})
	r := &router{builders: map[string]*namedDialer{"linux/amd64": {name: "test://amd64"}, "linux/arm64": {name: "test://arm64"}}}
	s := spec(t, dir)
	s.Platforms = []string{"linux/arm64,linux/amd64"}
	s.Provenance = "min"
	res, out := mustBuild(t, s, build.WithDialer(r))
	if len(r.keys) != 0 || len(r.builders["linux/amd64"].keys) != 1 || len(r.builders["linux/arm64"].keys) != 1 {
		t.Errorf("dials: router %d, amd64 %d, arm64 %d", len(r.keys), len(r.builders["linux/amd64"].keys), len(r.builders["linux/arm64"].keys))
	}
	if !strings.HasSuffix(res.MediaType, "image.index.v1+json") || len(res.Images) != 2 || len(res.Attestations) != 2 {
		t.Fatalf("result %+v", res)
	}
	// In the order asked, each by its builder.
	for i, want := range []struct{ platform, builder string }{{"linux/arm64", "test://arm64"}, {"linux/amd64", "test://amd64"}} {
		if im := res.Images[i]; im.Platform != want.platform || im.Builder != want.builder || im.Replica == "" {
			t.Errorf("image %d: %+v, want %s on %s", i, im, want.platform, want.builder)
		}
	}
	for i, a := range res.Attestations {
		if a.For != res.Images[i].Digest {
			t.Errorf("attestation %d is for %s, image %s", i, a.For, res.Images[i].Digest)
		}
	}
	// Each image is of its platform (the join checks each config).
	idx := readIndex(t, res)
	for _, d := range idx.Manifests {
		if d.Platform == nil {
			t.Fatalf("entry without platform: %+v", d)
		}
		if d.Platform.OS == "unknown" {
			continue
		}
		cf, err := readImage(t, res.Layout, d.Digest.String()).ConfigFile()
		if err != nil || cf.Architecture != d.Platform.Architecture {
			t.Errorf("entry %s: config %v %v", d.Platform, err, cf)
		}
	}
	// index.json names the index, and nothing else under the name.
	root, err := ociindex.NewStoreIndex(res.Layout).Read()
	if err != nil {
		t.Fatal(err)
	}
	named := 0
	for _, d := range root.Manifests {
		if strings.HasSuffix(d.Annotations["io.containerd.image.name"], s.Name+":"+s.Version) {
			named++
			if d.Digest.String() != res.Digest {
				t.Errorf("index.json names %s, the result is %s", d.Digest, res.Digest)
			}
		}
	}
	if named != 1 {
		t.Errorf("index.json has %d entries named %s:%s:\n%+v", named, s.Name, s.Version, root.Manifests)
	}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		if !strings.Contains(out, "["+p+"] [1/1] COPY Dockerfile /Dockerfile-"+strings.TrimPrefix(p, "linux/")) {
			t.Errorf("progress does not label %s's steps:\n%s", p, out)
		}
	}

	// A routing error: no dial, the error as it is, no layout left.
	r2 := &router{builders: r.builders, err: fail.New(fail.Usage, "add it", "no builder for platform linux/s390x")}
	s2 := spec(t, dir)
	s2.Platforms = []string{"linux/amd64,linux/s390x"}
	before := len(r.builders["linux/amd64"].keys)
	_, err = build.Build(context.Background(), s2, build.WithDialer(r2))
	if fail.ClassOf(err) != fail.Usage || !strings.Contains(err.Error(), "linux/s390x") || len(r.builders["linux/amd64"].keys) != before {
		t.Errorf("routing error: %v, dials %d → %d", err, before, len(r.builders["linux/amd64"].keys))
	}
	if _, err := os.Stat(s2.Layout); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused build left its layout %s: %v", filepath.Base(s2.Layout), err)
	}
	if len(r2.asked) != 1 || strings.Join(r2.asked[0], ",") != "linux/amd64,linux/s390x" {
		t.Errorf("router asked %v", r2.asked)
	}
}
