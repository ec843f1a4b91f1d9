package verify

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
)

// Report is what a pull showed.
type Report struct {
	Ref       string   `json:"ref"`
	Digest    string   `json:"digest"`
	MediaType string   `json:"mediaType"`
	Platforms []string `json:"platforms"`
	// Anonymous is true when the image can be pulled without credentials
	// (a public package); a cluster then needs no pull Secret.
	Anonymous bool `json:"anonymous"`
}

// Pull resolves ref with access and reads its manifest(s) and config(s).
// When expected is not empty the resolved digest must equal it.
func Pull(ctx context.Context, ref name.Reference, expected string, access registry.Access) (Report, error) {
	opts, err := access.Options(ctx)
	if err != nil {
		return Report{}, err
	}
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return Report{}, access.Explain(err, "pull", ref)
	}
	r := Report{Ref: ref.String(), Digest: desc.Digest.String(), MediaType: string(desc.MediaType)}
	if expected != "" && desc.Digest.String() != expected {
		return r, fail.New(fail.Verify, "another push may have moved the tag; rerun the release",
			"%s resolves to %s, not the expected %s", ref, desc.Digest, expected)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return r, access.Explain(err, "pull", ref)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return r, access.Explain(err, "pull", ref)
		}
		for _, d := range m.Manifests {
			if isAttestation(d) {
				continue
			}
			img, err := idx.Image(d.Digest)
			if err != nil {
				return r, access.Explain(err, "pull", ref)
			}
			if err := readConfig(img); err != nil {
				return r, access.Explain(err, "pull", ref.Context().Digest(d.Digest.String()))
			}
			if d.Platform != nil {
				r.Platforms = append(r.Platforms, d.Platform.String())
			}
		}
	} else {
		img, err := desc.Image()
		if err != nil {
			return r, access.Explain(err, "pull", ref)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return r, access.Explain(err, "pull", ref)
		}
		r.Platforms = append(r.Platforms, (&v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}).String())
	}
	r.Anonymous = anonymous(ctx, ref, access)
	return r, nil
}

// readConfig fetches the config blob: a manifest whose config is missing is
// not pullable.
func readConfig(img v1.Image) error {
	_, err := img.RawConfigFile()
	return err
}

// isAttestation tells BuildKit's attestation manifests (provenance, SBOM),
// which carry platform unknown/unknown, from the platform images.
func isAttestation(d v1.Descriptor) bool {
	return d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" ||
		(d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown")
}

func anonymous(ctx context.Context, ref name.Reference, access registry.Access) bool {
	anon := access
	anon.Creds = nil
	opts, err := anon.Options(ctx)
	if err != nil {
		return false
	}
	_, err = remote.Head(ref, opts...)
	return err == nil
}

// String is the one-line summary.
func (r Report) String() string {
	vis := "private (needs credentials)"
	if r.Anonymous {
		vis = "public (anonymous pulls work)"
	}
	return fmt.Sprintf("%s@%s pullable, platforms %v, %s", r.Ref, r.Digest, r.Platforms, vis)
}
