package build_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	bkclient "github.com/moby/buildkit/client"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/fail"
)

// markerImage is a one-layer linux/amd64 image holding /marker with text.
func markerImage(t *testing.T, text string) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "marker", Mode: 0o644, Size: int64(len(text))}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(tw, text); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf.Architecture, cf.OS = "amd64", "linux"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// markerLayout writes img into a new OCI layout, tagged tag (none if ""),
// beside a second, untagged image so that only the tag or the digest can
// pick it; it returns the layout and img's digest.
func markerLayout(t *testing.T, img v1.Image, tag string) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "base")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	var opts []layout.Option
	if tag != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag}))
		if err := lp.AppendImage(markerImage(t, "the other image\n")); err != nil {
			t.Fatal(err)
		}
	}
	if err := lp.AppendImage(img, opts...); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return dir, d.String()
}

// pushImage writes img to the stack's registry as repo:tag and returns the
// reference.
func pushImage(t *testing.T, img v1.Image, repoTag string) string {
	t.Helper()
	ref, err := name.ParseReference(stack.Registry.Host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := stack.Registry.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(hc.Transport),
		remote.WithAuth(&authn.Basic{Username: stack.Registry.Username, Password: stack.Registry.Password})); err != nil {
		t.Fatal(err)
	}
	return ref.String()
}

// freshPruned is a new buildkitd with empty state, pruned once more before
// use, so that no earlier build's cache or resolved metadata can make a
// build pass.
func freshPruned(t *testing.T) build.Option {
	t.Helper()
	bk := freshBuildKit(t)
	c, err := build.Connect(context.Background(), bk.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Prune(context.Background(), nil, bkclient.PruneAll); err != nil {
		t.Fatal(err)
	}
	return build.WithAddress(bk.Address)
}

// TestNamedContextForms: a named context replaces every form of image a
// FROM or COPY --from can name, each on a fresh, pruned buildkitd: the
// image built holds the marker of the context given, not of another image.
func TestNamedContextForms(t *testing.T) {
	testenv.NeedStack(t)
	t.Parallel()
	img := markerImage(t, "from the named context\n")
	tagged, dgst := markerLayout(t, img, "1.24.6")
	single, _ := markerLayout(t, img, "")
	treeDir := writeFiles(t, map[string]string{"marker": "from the named context\n"})
	regRef := pushImage(t, img, "ctx/base:1")
	host := stack.Registry.Host

	fromBase := func(ref string) string {
		return "FROM " + ref + " AS base\nFROM scratch\nCOPY --from=base /marker /marker\n"
	}
	cases := []struct {
		name, dockerfile string
		contexts         map[string]string
	}{
		{"tag, oci-layout without digest", fromBase("golang:1.24.6"),
			map[string]string{"golang:1.24.6": "oci-layout://" + single}},
		{"tag, oci-layout with digest", fromBase("golang:1.24.6"),
			map[string]string{"golang:1.24.6": "oci-layout://" + tagged + "@" + dgst}},
		{"tag, oci-layout by its tag", fromBase("golang:1.24.6"),
			map[string]string{"golang:1.24.6": "oci-layout://" + tagged + ":1.24.6"}},
		{"docker.io form in the Dockerfile, short name given", fromBase("docker.io/library/golang:1.24.6"),
			map[string]string{"golang:1.24.6": "oci-layout://" + single}},
		{"short form in the Dockerfile, docker.io name given", fromBase("golang:1.24.6"),
			map[string]string{"docker.io/library/golang:1.24.6": "oci-layout://" + single}},
		{"digest", fromBase("golang@" + dgst),
			map[string]string{"golang@" + dgst: "oci-layout://" + tagged + "@" + dgst}},
		{"registry host and path with tag", fromBase(host + "/owner/base:0.4.0"),
			map[string]string{host + "/owner/base:0.4.0": "oci-layout://" + single}},
		{"registry host and path with digest", fromBase("ghcr.io/owner/base@" + dgst),
			map[string]string{"ghcr.io/owner/base@" + dgst: "oci-layout://" + tagged + "@" + dgst}},
		{"docker-image:// to a tagged image", fromBase("golang:1.24.6"),
			map[string]string{"golang:1.24.6": "docker-image://" + regRef}},
		{"COPY --from a tagged name, a local directory", "FROM scratch\nCOPY --from=example.com/tree:v1 /marker /marker\n",
			map[string]string{"example.com/tree:v1": treeDir}},
		{"COPY --from a tagged name, oci-layout", "FROM scratch\nCOPY --from=golang:1.24.6 /marker /marker\n",
			map[string]string{"golang:1.24.6": "oci-layout://" + tagged + ":1.24.6"}},
	}
	creds := build.WithCredentials(build.StaticCredentials{
		Hosts: []string{host}, Username: stack.Registry.Username, Secret: stack.Registry.Password,
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each on its own buildkitd
			at := freshPruned(t)
			dir := writeFiles(t, map[string]string{"Dockerfile": tc.dockerfile})
			s := spec(t, dir)
			s.Contexts = tc.contexts
			var p progress
			res, err := build.Build(context.Background(), s, append(p.opts(), at, creds)...)
			if err != nil {
				t.Fatalf("build: %v\n%s", err, p.String())
			}
			if got := fileInImage(t, readImage(t, res.Layout, res.Digest), "/marker"); got != "from the named context\n" {
				t.Errorf("/marker holds %q", got)
			}
		})
	}
}

// TestNamedContextErrors: a context that cannot be what it names fails
// before the build, naming the context and the fix.
func TestNamedContextErrors(t *testing.T) {
	testenv.NeedStack(t)
	img := markerImage(t, "x")
	tagged, _ := markerLayout(t, img, "1.24.6")
	dir := writeFiles(t, map[string]string{"Dockerfile": "FROM golang:1.24.6\n"})
	missing := "sha256:" + strings.Repeat("0", 64)
	cases := []struct {
		name     string
		contexts map[string]string
		class    fail.Class
		want     []string
	}{
		{"digest not in the layout", map[string]string{"golang:1.24.6": "oci-layout://" + tagged + "@" + missing},
			fail.Build, []string{"holds no image " + missing, "golang:1.24.6"}},
		{"tag not in the layout", map[string]string{"golang:1.24.6": "oci-layout://" + tagged + ":1.25"},
			fail.Build, []string{`0 images tagged "1.25"`}},
		{"two images, neither named", map[string]string{"golang:1.24.6": "oci-layout://" + tagged},
			fail.Build, []string{"holds 2 images", "oci-layout://DIR:TAG"}},
		{"not a layout", map[string]string{"golang:1.24.6": "oci-layout://" + dir},
			fail.Build, []string{"is not an OCI layout"}},
		{"missing directory", map[string]string{"tree": filepath.Join(dir, "nope")},
			fail.Build, []string{"directory", "does not exist", "oci-layout:///DIR"}},
		{"one image named twice", map[string]string{"golang:1.24.6": "docker-image://a/b", "docker.io/library/golang:1.24.6": "docker-image://a/c"},
			fail.Usage, []string{"name the same image golang:1.24.6"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := spec(t, dir)
			s.Contexts = tc.contexts
			err := s.Validate()
			if fail.ClassOf(err) != tc.class {
				t.Fatalf("class %v, want %v: %v", fail.ClassOf(err), tc.class, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}
