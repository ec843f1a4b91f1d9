package build

import (
	"bytes"
	"io"

	"github.com/containerd/platforms"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/idopipe/idopipe/pkg/fail"
)

// part is one platform's export of an image built on a builder per
// platform: an image manifest, or (with attestations) an index of the
// image and its attestation manifests.
type part struct {
	platform string // os/arch[/variant], normal form
	desc     descriptor
}

// join writes into the layout the image index of parts, as BuildKit's own
// multi-platform export makes it: each part's image manifest with its
// platform and, after it, the attestation manifests about it, in the
// parts' order. Every blob they name is in the layout already (each part
// was exported there); only the index is written. Each part's image must
// be of the platform it was built for: a builder that built another
// platform (placed on the wrong nodes) fails the build instead of
// mislabelling an image.
func (s *layoutStore) join(parts []part) (descriptor, error) {
	lp := layout.Path(s.dir)
	var adds []mutate.IndexAddendum
	for _, pt := range parts {
		h, err := v1.NewHash(pt.desc.Digest.String())
		if err != nil {
			return descriptor{}, s.joinFailed(pt, err)
		}
		raw, err := lp.Bytes(h)
		if err != nil {
			return descriptor{}, s.joinFailed(pt, err)
		}
		children := []v1.Descriptor{{MediaType: types.MediaType(pt.desc.MediaType), Digest: h, Size: pt.desc.Size}}
		if types.MediaType(pt.desc.MediaType).IsIndex() {
			m, err := v1.ParseIndexManifest(bytes.NewReader(raw))
			if err != nil {
				return descriptor{}, s.joinFailed(pt, err)
			}
			children = m.Manifests
		}
		images := 0
		for _, c := range children {
			if !IsAttestation(c) {
				images++
				got, err := s.platformOf(c)
				if err != nil {
					return descriptor{}, s.joinFailed(pt, err)
				}
				if platforms.Format(platforms.Normalize(toOCIPlatform(got))) != pt.platform {
					return descriptor{}, fail.New(fail.Build, "place its builder on "+pt.platform+" nodes (its node selector)",
						"the builder of platform %s built an image of platform %s", pt.platform, got.String())
				}
				c.Platform = got
			}
			adds = append(adds, mutate.IndexAddendum{Add: described{c}, Descriptor: c})
		}
		if images != 1 {
			return descriptor{}, fail.New(fail.Build, "", "the export of platform %s holds %d images, not one", pt.platform, images)
		}
	}
	idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
	raw, err := idx.RawManifest()
	if err != nil {
		return descriptor{}, fail.Wrap(fail.Build, err, "", "cannot make the image index of platforms %s", partPlatforms(parts))
	}
	h, size, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return descriptor{}, fail.Wrap(fail.Internal, err, "", "cannot hash the image index")
	}
	if err := lp.WriteBlob(h, io.NopCloser(bytes.NewReader(raw))); err != nil {
		return descriptor{}, fail.Wrap(fail.Build, err, "pass --oci-layout a writable directory", "cannot write the image index into %s", s.dir)
	}
	return descriptor{MediaType: ocispecs.MediaTypeImageIndex, Digest: digest.Digest(h.String()), Size: size}, nil
}

func (s *layoutStore) joinFailed(pt part, err error) error {
	return fail.Wrap(fail.Build, err, "build again; if it persists, remove the layout directory", "cannot read the export of platform %s (%s) from OCI layout %s", pt.platform, pt.desc.Digest, s.dir)
}

// platformOf is the platform of image manifest d: its config's.
func (s *layoutStore) platformOf(d v1.Descriptor) (*v1.Platform, error) {
	lp := layout.Path(s.dir)
	raw, err := lp.Bytes(d.Digest)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	cfg, err := lp.Bytes(m.Config.Digest)
	if err != nil {
		return nil, err
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(cfg))
	if err != nil {
		return nil, err
	}
	return cf.Platform(), nil
}

func toOCIPlatform(p *v1.Platform) ocispecs.Platform {
	return ocispecs.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
}

func partPlatforms(parts []part) string {
	var b bytes.Buffer
	for i, p := range parts {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.platform)
	}
	return b.String()
}

// described is a descriptor as mutate.AppendManifests takes a manifest:
// its blob is in the layout already, nothing is read.
type described struct{ d v1.Descriptor }

func (d described) MediaType() (types.MediaType, error) { return d.d.MediaType, nil }
func (d described) Digest() (v1.Hash, error)            { return d.d.Digest, nil }
func (d described) Size() (int64, error)                { return d.d.Size, nil }
func (d described) Descriptor() (*v1.Descriptor, error) {
	c := d.d
	return &c, nil
}
