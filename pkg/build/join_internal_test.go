package build

import (
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	bkclient "github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"

	"github.com/idopipe/idopipe/pkg/fail"
)

// platformImage is a random image whose config says os/arch, written to
// the layout at dir; its descriptor as an export reports it.
func platformImage(t *testing.T, lp layout.Path, os, arch string) (v1.Image, descriptor) {
	t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf.OS, cf.Architecture = os, arch
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(mutate.ConfigMediaType(img, types.OCIConfigJSON), types.OCIManifestSchema1)
	if err := lp.WriteImage(img); err != nil {
		t.Fatal(err)
	}
	return img, desc(t, img)
}

func desc(t *testing.T, a interface {
	Digest() (v1.Hash, error)
	Size() (int64, error)
	MediaType() (types.MediaType, error)
}) descriptor {
	t.Helper()
	h, _ := a.Digest()
	n, _ := a.Size()
	mt, _ := a.MediaType()
	return descriptor{MediaType: string(mt), Digest: digest.Digest(h.String()), Size: n}
}

// TestJoin: the parts' images, each with its platform from its config,
// and an attestation part's manifests as they are, in the parts' order,
// make one OCI index; a part whose image is of another platform than its
// builder's is refused.
func TestJoin(t *testing.T) {
	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	amd, amdDesc := platformImage(t, lp, "linux", "amd64")
	arm, _ := platformImage(t, lp, "linux", "arm64")
	att, _ := platformImage(t, lp, "unknown", "unknown")
	armH, _ := arm.Digest()
	// The arm64 export with provenance: an index of the image and its
	// attestation manifest, as BuildKit exports one platform with one.
	armIdx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"},
			Annotations: map[string]string{AnnotationReferenceType: ReferenceTypeAttestation, AnnotationReferenceDigest: armH.String()}}},
	), types.OCIImageIndex)
	if err := lp.WriteIndex(armIdx); err != nil {
		t.Fatal(err)
	}
	s := &layoutStore{dir: dir}
	joined, err := s.join([]part{{platform: "linux/amd64", desc: amdDesc}, {platform: "linux/arm64", desc: desc(t, armIdx)}})
	if err != nil {
		t.Fatal(err)
	}
	if joined.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("media type %s", joined.MediaType)
	}
	h, _ := v1.NewHash(joined.Digest.String())
	raw, err := lp.Bytes(h)
	if err != nil {
		t.Fatal(err)
	}
	m, err := v1.ParseIndexManifest(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	amdH, _ := amd.Digest()
	got := m.Manifests
	if len(got) != 3 || got[0].Digest != amdH || got[0].Platform.String() != "linux/amd64" ||
		got[1].Digest != armH || got[1].Platform.String() != "linux/arm64" ||
		got[2].Annotations[AnnotationReferenceDigest] != armH.String() || !IsAttestation(got[2]) || m.MediaType != types.OCIImageIndex {
		t.Fatalf("joined index:\n%s", raw)
	}

	// An amd64 image from the arm64 builder.
	_, err = s.join([]part{{platform: "linux/arm64", desc: amdDesc}})
	if fail.ClassOf(err) != fail.Build || !strings.Contains(err.Error(), "the builder of platform linux/arm64 built an image of platform linux/amd64") {
		t.Errorf("mismatch: %v", err)
	}
}

// TestForPlatformCaches: each platform's part imports and exports its own
// registry cache tag and local directory; a ref by digest stays.
func TestForPlatformCaches(t *testing.T) {
	p := &plan{solve: bkclient.SolveOpt{
		CacheImports: []bkclient.CacheOptionsEntry{
			{Type: "registry", Attrs: map[string]string{"ref": "127.0.0.1:5000/o/planner:buildcache"}},
			{Type: "registry", Attrs: map[string]string{"ref": "ghcr.io/o/planner"}},
			{Type: "registry", Attrs: map[string]string{"ref": "ghcr.io/o/planner@sha256:" + strings.Repeat("a", 64)}},
			{Type: "local", Attrs: map[string]string{"src": "/tmp/cache/"}},
		},
		CacheExports: []bkclient.CacheOptionsEntry{
			{Type: "registry", Attrs: map[string]string{"ref": "127.0.0.1:5000/o/planner:buildcache", "mode": "max"}},
			{Type: "inline", Attrs: map[string]string{}},
		},
	}}
	p.forPlatform("linux/arm/v7")
	got := []string{p.solve.CacheImports[0].Attrs["ref"], p.solve.CacheImports[1].Attrs["ref"], p.solve.CacheImports[2].Attrs["ref"],
		p.solve.CacheImports[3].Attrs["src"], p.solve.CacheExports[0].Attrs["ref"]}
	want := []string{"127.0.0.1:5000/o/planner:buildcache-linux-arm-v7", "ghcr.io/o/planner:latest-linux-arm-v7", "ghcr.io/o/planner@sha256:" + strings.Repeat("a", 64),
		"/tmp/cache-linux-arm-v7", "127.0.0.1:5000/o/planner:buildcache-linux-arm-v7"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("cache %d: %s, want %s", i, got[i], want[i])
		}
	}
	if p.label != "linux/arm/v7" || p.solve.CacheExports[0].Attrs["mode"] != "max" {
		t.Errorf("label %q attrs %v", p.label, p.solve.CacheExports[0].Attrs)
	}
	if refs := p.registryCaches(); len(refs) != 3 {
		t.Errorf("registry caches %v", refs)
	}
}

// TestLabelled: a part's steps are shown as "[PLATFORM] STEP", without
// changing what the recorder keeps.
func TestLabelled(t *testing.T) {
	v := &bkclient.Vertex{Digest: digest.FromString("x"), Name: "[1/1] COPY . /"}
	s := &bkclient.SolveStatus{Vertexes: []*bkclient.Vertex{v}}
	out := labelled(s, "linux/arm64")
	if out.Vertexes[0].Name != "[linux/arm64] [1/1] COPY . /" || v.Name != "[1/1] COPY . /" {
		t.Errorf("labelled %q, original %q", out.Vertexes[0].Name, v.Name)
	}
	if labelled(s, "") != s {
		t.Error("no label changed the status")
	}
}
