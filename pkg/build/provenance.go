package build

import (
	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/idopipe/idopipe/pkg/fail"
)

// The annotations BuildKit puts on an attestation manifest's descriptor in
// an image index; pkg/verify skips the same manifests.
const (
	AnnotationReferenceType   = "vnd.docker.reference.type"
	AnnotationReferenceDigest = "vnd.docker.reference.digest"
	ReferenceTypeAttestation  = "attestation-manifest"
)

// provenanceAttrs maps --provenance to the frontend's attest:provenance
// attribute: min or max SLSA provenance, or none.
func provenanceAttrs(mode string) (map[string]string, error) {
	switch mode {
	case "", "false", "none":
		return nil, nil
	case "true":
		mode = "min"
	case "min", "max":
	default:
		return nil, fail.New(fail.Usage, "use --provenance min, max or false", "unknown provenance mode %q", mode)
	}
	return map[string]string{"attest:provenance": "mode=" + mode}, nil
}

// ValidateProvenance refuses a --provenance mode that is not one (min,
// max, false; true and none as their aliases), before any build work.
func ValidateProvenance(mode string) error {
	_, err := provenanceAttrs(mode)
	return err
}

// IsAttestation tells an attestation manifest from a platform image in an
// index: by BuildKit's reference-type annotation, or by the platform
// unknown/unknown it carries (what GHCR shows when this is mishandled).
func IsAttestation(d v1.Descriptor) bool {
	return d.Annotations[AnnotationReferenceType] == ReferenceTypeAttestation ||
		(d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown")
}

// describeLayout fills r's media type, platform images and attestations
// from what the exporter wrote to the layout.
func describeLayout(r *Result) error {
	bad := func(err error) error {
		return fail.Wrap(fail.Build, err, "build again; if it persists, remove the layout directory", "cannot read the exported image %s from OCI layout %s", r.Digest, r.Layout)
	}
	lp, err := layout.FromPath(r.Layout)
	if err != nil {
		return bad(err)
	}
	h, err := v1.NewHash(r.Digest)
	if err != nil {
		return bad(err)
	}
	root, err := lp.ImageIndex()
	if err != nil {
		return bad(err)
	}
	desc, err := findDescriptor(root, h)
	if err != nil {
		return bad(err)
	}
	r.MediaType = string(desc.MediaType)
	if !desc.MediaType.IsIndex() {
		img, err := root.Image(h)
		if err != nil {
			return bad(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return bad(err)
		}
		r.Images = []Image{{Platform: cf.Platform().String(), Digest: r.Digest}}
		return nil
	}
	idx, err := root.ImageIndex(h)
	if err != nil {
		return bad(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return bad(err)
	}
	for _, d := range m.Manifests {
		if IsAttestation(d) {
			r.Attestations = append(r.Attestations, Attestation{Digest: d.Digest.String(), For: d.Annotations[AnnotationReferenceDigest]})
			continue
		}
		p := ""
		if d.Platform != nil {
			p = d.Platform.String()
		} else if img, err := idx.Image(d.Digest); err == nil {
			if cf, err := img.ConfigFile(); err == nil {
				p = cf.Platform().String()
			}
		}
		r.Images = append(r.Images, Image{Platform: p, Digest: d.Digest.String()})
	}
	return nil
}

func findDescriptor(idx v1.ImageIndex, h v1.Hash) (v1.Descriptor, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	for _, d := range m.Manifests {
		if d.Digest == h {
			return d, nil
		}
	}
	return v1.Descriptor{}, fail.New(fail.Build, "", "index.json does not list %s", h)
}
