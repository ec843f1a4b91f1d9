package sign

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Where a Sigstore bundle is stored: an OCI 1.1 referrer of the digest it
// is about, as actions/attest (push-to-registry) and cosign v3 store them
// and as gh attestation verify --bundle-from-oci and cosign verify read
// them: an image manifest whose artifactType is the bundle's media type,
// with the empty config, the bundle as its one layer, and the digest as
// its subject. go-containerregistry writes the referrers tag
// (repo:sha256-<hex>, an index) beside it on a registry without the
// referrers API, and reads that tag back there.
const (
	// BundleMediaType is a Sigstore bundle v0.3's media type: the
	// referrer's artifactType and its layer's media type.
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// bundleMediaPrefix matches every bundle version's media type, as gh
	// matches them.
	bundleMediaPrefix = "application/vnd.dev.sigstore.bundle"
	// emptyConfigMediaType and emptyConfig are OCI 1.1's empty descriptor.
	emptyConfigMediaType = "application/vnd.oci.empty.v1+json"
	emptyConfig          = "{}"

	// AnnotationBundleContent and AnnotationBundlePredicateType are the
	// referrer manifest's annotations cosign v3 and actions/attest write.
	AnnotationBundleContent       = "dev.sigstore.bundle.content"
	AnnotationBundlePredicateType = "dev.sigstore.bundle.predicateType"
	annotationCreated             = "org.opencontainers.image.created"
)

// storedBundle is one bundle found among a digest's referrers.
type storedBundle struct {
	manifest      v1.Hash // the referrer manifest's digest
	predicateType string  // its annotation; may be empty
	content       []byte  // the bundle's JSON
}

// referrers lists the referrers of d: through the referrers API where the
// registry serves it, else its tag fallback (go-containerregistry chooses).
// None is no error.
func referrers(d name.Digest, opts []remote.Option) ([]v1.Descriptor, error) {
	idx, err := remote.Referrers(d, opts...)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	return m.Manifests, nil
}

// mayBeBundle tells a referrer that may hold a Sigstore bundle: its
// artifactType says so, or is the empty config's media type, which some
// registries' referrers API reports instead of the manifest's artifactType
// (go-containerregistry's own registry does).
func mayBeBundle(d v1.Descriptor) bool {
	return strings.HasPrefix(d.ArtifactType, bundleMediaPrefix) || d.ArtifactType == emptyConfigMediaType
}

// errNotBundle is a referrer that holds no Sigstore bundle.
var errNotBundle = errors.New("not a Sigstore bundle")

// readBundle reads the bundle referrer desc of repo: the manifest's one
// bundle layer. The registry client checks the manifest and the layer
// against their digests as it reads them.
func readBundle(repo name.Repository, desc v1.Descriptor, opts []remote.Option) (storedBundle, error) {
	img, err := remote.Image(repo.Digest(desc.Digest.String()), opts...)
	if err != nil {
		return storedBundle{}, err
	}
	m, err := img.Manifest()
	if err != nil {
		return storedBundle{}, err
	}
	if m.ArtifactType != "" && !strings.HasPrefix(m.ArtifactType, bundleMediaPrefix) {
		return storedBundle{}, errNotBundle
	}
	var layer *v1.Descriptor
	for i, l := range m.Layers {
		if strings.HasPrefix(string(l.MediaType), bundleMediaPrefix) {
			layer = &m.Layers[i]
			break
		}
	}
	if layer == nil {
		return storedBundle{}, errNotBundle
	}
	if layer.Size > maxPayload {
		return storedBundle{}, fmt.Errorf("bundle %s is %d bytes, more than a bundle can be", layer.Digest, layer.Size)
	}
	b, err := readPayload(img, layer.Digest)
	if err != nil {
		return storedBundle{}, err
	}
	return storedBundle{manifest: desc.Digest, predicateType: m.Annotations[AnnotationBundlePredicateType], content: b}, nil
}

// referrerManifest is an OCI image manifest with the artifactType field
// (go-containerregistry's mutate does not set it).
type referrerManifest struct{ v1.Manifest }

func (r referrerManifest) RawManifest() ([]byte, error)        { return json.Marshal(r.Manifest) }
func (r referrerManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// writeBundle stores bundle as a referrer of subject (its descriptor: media
// type, digest, size) in repo and returns the referrer's digest. The
// manifest is written by digest; on a registry without the referrers API,
// go-containerregistry adds it to the referrers tag's index as well.
func writeBundle(repo name.Repository, subject v1.Descriptor, bundle []byte, predicateType string, now time.Time, opts []remote.Option) (v1.Hash, error) {
	config := static.NewLayer([]byte(emptyConfig), emptyConfigMediaType)
	layer := static.NewLayer(bundle, BundleMediaType)
	var descs []v1.Descriptor
	for _, l := range []v1.Layer{config, layer} {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			return v1.Hash{}, err
		}
		d, err := l.Digest()
		if err != nil {
			return v1.Hash{}, err
		}
		size, err := l.Size()
		if err != nil {
			return v1.Hash{}, err
		}
		mt, err := l.MediaType()
		if err != nil {
			return v1.Hash{}, err
		}
		descs = append(descs, v1.Descriptor{MediaType: mt, Digest: d, Size: size})
	}
	m := referrerManifest{v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  BundleMediaType,
		Config:        descs[0],
		Layers:        descs[1:],
		Subject:       &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
		Annotations: map[string]string{
			AnnotationBundleContent:       "dsse-envelope",
			AnnotationBundlePredicateType: predicateType,
			annotationCreated:             now.UTC().Format(time.RFC3339),
		},
	}}
	raw, err := m.RawManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	h, _, err := v1.SHA256(strings.NewReader(string(raw)))
	if err != nil {
		return v1.Hash{}, err
	}
	return h, remote.Put(repo.Digest(h.String()), m, opts...)
}
