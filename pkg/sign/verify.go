package sign

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
)

// Verified says which key signed a digest.
type Verified struct {
	Digest string `json:"digest"`
	Key    string `json:"key"` // file (sha256:…)
	// Provenance is the signed SLSA provenance, when VerifyProvenance was
	// asked for and the image has one.
	Provenance []Provenance `json:"provenance,omitempty"`
}

// Option tunes Verify.
type Option func(*verifyOptions)

type verifyOptions struct {
	provenance bool
	sourceRepo string
}

// WithProvenance also reads the signed provenance attestations (the .att
// manifest) and returns what they say.
func WithProvenance() Option { return func(o *verifyOptions) { o.provenance = true } }

// WithSourceRepo requires signed provenance whose source repository is
// repo (https://github.com/OWNER/NAME, with or without .git; a git@
// address counts as its https form).
func WithSourceRepo(repo string) Option {
	return func(o *verifyOptions) { o.provenance, o.sourceRepo = true, repo }
}

// Verify checks that the digest ref names is signed by one of keys: a
// signature in its .sig manifest (or a cosign OCI 1.1 referrer) that one
// of the keys verifies and whose payload names this digest. Its error is
// of class fail.Unsigned and names the image, the digest and the keys
// tried; a registry that cannot be read gives the registry's error.
func Verify(ctx context.Context, ref name.Digest, keys []Key, access registry.Access, opts ...Option) (Verified, error) {
	var o verifyOptions
	for _, opt := range opts {
		opt(&o)
	}
	v := Verified{Digest: ref.DigestStr()}
	if len(keys) == 0 {
		return v, fail.New(fail.Usage, "pass --verify-key (or --key) with a public key", "no key to verify %s with", ref)
	}
	base, err := access.Options(ctx)
	if err != nil {
		return v, err
	}
	ropts := contextOpts(ctx, base)
	h, err := v1.NewHash(ref.DigestStr())
	if err != nil {
		return v, fail.New(fail.Usage, "give the digest as sha256: and 64 hex digits", "bad digest in %s", ref)
	}
	tag := SignatureTag(ref.Context(), h)
	_, entries, err := readEntries(tag, SimpleSigningMediaType, ropts)
	if err != nil {
		return v, access.Explain(err, "read the signatures of", ref)
	}
	if len(entries) == 0 {
		// cosign's OCI 1.1 mode: the referrers API, or its tag fallback.
		if entries, err = referrerEntries(ref, ropts); err != nil {
			return v, access.Explain(err, "read the referrers of", ref)
		}
	}
	tried := Keys(keys)
	if len(entries) == 0 {
		return v, fail.New(fail.Unsigned, "sign it (idopipe push --sign --key cosign.key, or cosign sign --key), or deploy a signed image",
			"image %s is not signed: no signature for %s (keys tried: %s)", ref.Context(), ref.DigestStr(), tried)
	}
	var other string
	for _, e := range entries {
		for _, k := range keys {
			ok, signed := signs(e, k, ref.DigestStr())
			if ok {
				v.Key = k.String()
				if o.provenance {
					if v.Provenance, err = verifiedProvenance(ctx, ref, h, keys, access, ropts); err != nil {
						return v, err
					}
				}
				if o.sourceRepo != "" {
					if err := checkSource(ref, v.Provenance, o.sourceRepo, tried); err != nil {
						return v, err
					}
				}
				return v, nil
			}
			if signed != "" {
				other = signed
			}
		}
	}
	if other != "" {
		return v, fail.New(fail.Unsigned, "sign this digest; a signature copied from another image does not count",
			"image %s digest %s: its signature by one of the keys tried (%s) is over another digest, %s", ref.Context(), ref.DigestStr(), tried, other)
	}
	return v, fail.New(fail.Unsigned, "pass --verify-key with the public key of the key that signed it, or sign it with one of these",
		"image %s digest %s has %d signature(s), none valid for the keys tried: %s", ref.Context(), ref.DigestStr(), len(entries), tried)
}

// signs tells whether e is k's valid signature over digest. When k's
// signature is valid but names another digest, that digest is returned.
func signs(e entry, k Key, digest string) (bool, string) {
	sig, err := decodeSig(e.sig)
	if err != nil || len(sig) == 0 {
		return false, ""
	}
	if err := k.check(sig, e.payload); err != nil {
		return false, ""
	}
	var p payload.Cosign
	if err := json.Unmarshal(e.payload, &p); err != nil {
		return false, ""
	}
	if p.Image.DigestStr() != digest {
		return false, p.Image.DigestStr()
	}
	return true, ""
}

// verifiedProvenance reads the .att manifests of h and, for an index, of
// each of its images, and returns the SLSA provenance statements one of
// keys signed.
func verifiedProvenance(ctx context.Context, ref name.Digest, h v1.Hash, keys []Key, access registry.Access, opts []remote.Option) ([]Provenance, error) {
	digests := []v1.Hash{h}
	f, err := access.Fetch(ref, opts, "read")
	if err != nil {
		return nil, err
	}
	for _, d := range f.Manifests {
		if !isAttestation(d) {
			digests = append(digests, d.Digest)
		}
	}
	var out []Provenance
	for _, d := range digests {
		_, entries, err := readEntries(AttestationTag(ref.Context(), d), DSSEMediaType, opts)
		if err != nil {
			return nil, access.Explain(err, "read the attestations of", ref)
		}
		for _, e := range entries {
			body, err := openEnvelope(ctx, e.payload, keys)
			if err != nil {
				continue // not signed by these keys
			}
			p, err := parseProvenance(body)
			if err != nil {
				continue // another predicate
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// checkSource requires a signed provenance whose source is repo.
func checkSource(ref name.Digest, provs []Provenance, repo, tried string) error {
	if len(provs) == 0 {
		return fail.New(fail.Unsigned, "build with --provenance min (or max) and --sign, so the provenance is signed with the image",
			"image %s digest %s has no provenance signed by the keys tried (%s): cannot check --source-repo %s", ref.Context(), ref.DigestStr(), tried, repo)
	}
	want := normalizeRepo(repo)
	var seen []string
	for _, p := range provs {
		if normalizeRepo(p.Source) == want {
			return nil
		}
		seen = append(seen, fmt.Sprintf("%q", p.Source))
	}
	return fail.New(fail.Unsigned, "deploy an image built from "+repo+", or correct --source-repo",
		"image %s digest %s was built from %v, not %s (provenance signed by %s)", ref.Context(), ref.DigestStr(), seen, repo, tried)
}
