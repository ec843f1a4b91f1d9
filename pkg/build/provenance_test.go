package build_test

import (
	"reflect"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/build"
)

// TestProvenance: --provenance min and max attach one attestation manifest
// per platform image; the result lists the platforms without them, and
// names the image each attestation is about. false attaches none.
func TestProvenance(t *testing.T) {
	testenv.NeedStack(t)
	dir := writeFiles(t, map[string]string{
		"Dockerfile": perArchDockerfile, "hello-amd64": "amd64\n", "hello-arm64": "arm64\n",
	})
	for _, tc := range []struct {
		mode      string
		platforms []string
		attests   int
	}{
		{"min", []string{"linux/amd64"}, 1},
		{"max", []string{"linux/amd64", "linux/arm64"}, 2},
		{"false", []string{"linux/amd64"}, 0},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			s := spec(t, dir)
			s.Provenance = tc.mode
			s.Platforms = tc.platforms
			res, _ := mustBuild(t, s)
			if got := res.Platforms(); !reflect.DeepEqual(got, tc.platforms) {
				t.Fatalf("platforms %v, want %v (attestations must not count as platforms)", got, tc.platforms)
			}
			if len(res.Attestations) != tc.attests {
				t.Fatalf("%d attestations, want %d: %+v", len(res.Attestations), tc.attests, res.Attestations)
			}
			if tc.attests == 0 {
				if strings.Contains(res.MediaType, "index") {
					t.Errorf("a single platform without provenance should be one image manifest, got %s", res.MediaType)
				}
				return
			}
			images := map[string]bool{}
			for _, im := range res.Images {
				images[im.Digest] = true
			}
			idx := readIndex(t, res)
			for _, a := range res.Attestations {
				if !images[a.For] {
					t.Errorf("attestation %s is for %q, not one of the images", a.Digest, a.For)
				}
				// The attestation's layer is an in-toto statement with
				// SLSA provenance.
				img := readImage(t, res.Layout, a.Digest)
				m, err := img.Manifest()
				if err != nil {
					t.Fatal(err)
				}
				if len(m.Layers) == 0 || !strings.Contains(m.Layers[0].Annotations["in-toto.io/predicate-type"], "slsa.dev/provenance") {
					t.Errorf("attestation %s has no SLSA provenance layer: %+v", a.Digest, m.Layers)
				}
			}
			for _, d := range idx.Manifests {
				isAtt := build.IsAttestation(d)
				if isAtt != (d.Annotations[build.AnnotationReferenceType] == build.ReferenceTypeAttestation) {
					t.Errorf("descriptor %s: IsAttestation %v disagrees with its annotations %v", d.Digest, isAtt, d.Annotations)
				}
				if isAtt && d.Platform != nil && (d.Platform.OS != "unknown" || d.Platform.Architecture != "unknown") {
					t.Errorf("attestation %s has platform %s", d.Digest, d.Platform)
				}
			}
		})
	}
}

func TestIsAttestation(t *testing.T) {
	for _, tc := range []struct {
		d    v1.Descriptor
		want bool
	}{
		{v1.Descriptor{Annotations: map[string]string{build.AnnotationReferenceType: build.ReferenceTypeAttestation}}, true},
		{v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}}, true},
		{v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}, false},
	} {
		if got := build.IsAttestation(tc.d); got != tc.want {
			t.Errorf("%+v: %v, want %v", tc.d, got, tc.want)
		}
	}
}
