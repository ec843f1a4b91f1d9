package sign

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// cosign's names for what it stores in a registry.
const (
	// SignatureAnnotation holds a layer's base64 signature.
	SignatureAnnotation = "dev.cosignproject.cosign/signature"
	// SimpleSigningMediaType is a signature layer's media type: its
	// content is the signed payload.
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// DSSEMediaType is an attestation layer's: a DSSE envelope.
	DSSEMediaType = "application/vnd.dsse.envelope.v1+json"
	// InTotoPayloadType is the DSSE payload type of an in-toto statement.
	InTotoPayloadType = "application/vnd.in-toto+json"
	// ReferrerArtifactType is the artifact type of a signature cosign
	// stores as an OCI 1.1 referrer (--registry-referrers-mode=oci-1-1).
	ReferrerArtifactType = "application/vnd.dev.cosign.artifact.sig.v1+json"

	sigSuffix = "sig"
	attSuffix = "att"
	// maxPayload bounds what is read of one signature or attestation layer.
	maxPayload = 16 << 20
)

// SignatureTag is where cosign keeps the signatures of digest d in repo:
// repo:sha256-<hex>.sig.
func SignatureTag(repo name.Repository, d v1.Hash) name.Tag { return suffixTag(repo, d, sigSuffix) }

// AttestationTag is repo:sha256-<hex>.att.
func AttestationTag(repo name.Repository, d v1.Hash) name.Tag { return suffixTag(repo, d, attSuffix) }

func suffixTag(repo name.Repository, d v1.Hash, suffix string) name.Tag {
	return repo.Tag(d.Algorithm + "-" + d.Hex + "." + suffix)
}

// entry is one signature or attestation layer as stored.
type entry struct {
	payload []byte
	sig     string // base64; "" for a DSSE envelope (the signature is inside)
}

// readEntries reads the layers of the manifest at tag: nil and no error
// when the tag does not exist.
func readEntries(tag name.Tag, mediaType string, opts []remote.Option) (v1.Image, []entry, error) {
	img, err := remote.Image(tag, opts...)
	if err != nil {
		if isNotFound(err) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	entries, err := imageEntries(img, mediaType)
	return img, entries, err
}

// imageEntries reads the layers of img that have mediaType.
// readPayload reads layer digest of img (at most maxPayload bytes); the
// registry client checks the content against its digest as it reads.
func readPayload(img v1.Image, digest v1.Hash) ([]byte, error) {
	l, err := img.LayerByDigest(digest)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, maxPayload))
}

func imageEntries(img v1.Image, mediaType string) ([]entry, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	var out []entry
	for _, d := range m.Layers {
		if string(d.MediaType) != mediaType {
			continue
		}
		if d.Size > maxPayload {
			return nil, fmt.Errorf("layer %s is %d bytes, more than a signature payload can be", d.Digest, d.Size)
		}
		b, err := readPayload(img, d.Digest)
		if err != nil {
			return nil, err
		}
		out = append(out, entry{payload: b, sig: d.Annotations[SignatureAnnotation]})
	}
	return out, nil
}

// appendEntry writes the manifest at tag anew with one more layer: base's
// layers (nil base for none) and payload with annotations. The image's
// own manifest and index are not touched.
func appendEntry(tag name.Tag, base v1.Image, payload []byte, mediaType string, annotations map[string]string, opts []remote.Option) error {
	if base == nil {
		base = mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(payload, types.MediaType(mediaType)),
		Annotations: annotations,
	})
	if err != nil {
		return err
	}
	return remote.Write(tag, img, opts...)
}

// referrerEntries reads the signatures cosign stored as OCI 1.1 referrers
// of d (--registry-referrers-mode=oci-1-1), among refs, d's referrers.
func referrerEntries(d name.Digest, refs []v1.Descriptor, opts []remote.Option) ([]entry, error) {
	var out []entry
	for _, desc := range refs {
		if desc.ArtifactType != ReferrerArtifactType {
			continue
		}
		img, err := remote.Image(d.Context().Digest(desc.Digest.String()), opts...)
		if err != nil {
			if isNotFound(err) {
				continue // listed by a stale referrers tag
			}
			return nil, err
		}
		es, err := imageEntries(img, SimpleSigningMediaType)
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
	}
	return out, nil
}

func isNotFound(err error) bool {
	var te *transport.Error
	if errors.As(err, &te) {
		if te.StatusCode == http.StatusNotFound {
			return true
		}
		for _, d := range te.Errors {
			if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
				return true
			}
		}
	}
	return false
}

func decodeSig(s string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(strings.TrimSpace(s))
}

// contextOpts are opts bound to ctx.
func contextOpts(ctx context.Context, opts []remote.Option) []remote.Option {
	return append(append([]remote.Option{}, opts...), remote.WithContext(ctx))
}
