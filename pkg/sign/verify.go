package sign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
)

// Verified says who signed a digest: a key, or a certificate.
type Verified struct {
	Digest string `json:"digest"`
	Key    string `json:"key,omitempty"` // file (sha256:…), for a key signature
	// Certificate is who signed, for a keyless signature (a Sigstore
	// bundle with a Fulcio certificate).
	Certificate *Certificate `json:"certificate,omitempty"`
	// Timestamp is the verified time that proves the certificate was
	// valid when it signed; TimestampBy says what proved it.
	Timestamp   *time.Time `json:"timestamp,omitempty"`
	TimestampBy string     `json:"timestampBy,omitempty"`
	// Bundle is the digest of the referrer manifest whose bundle matched.
	Bundle string `json:"bundle,omitempty"`
	// Provenance is the signed SLSA provenance, when VerifyProvenance was
	// asked for and the image has one.
	Provenance []Provenance `json:"provenance,omitempty"`
}

// Certificate is what a Fulcio certificate says of who signed.
type Certificate struct {
	Subject           string `json:"subject"`                     // SAN: the workflow file and ref, for GitHub Actions
	Issuer            string `json:"issuer"`                      // OIDC issuer
	Repository        string `json:"repository,omitempty"`        // source repository URI
	Ref               string `json:"ref,omitempty"`               // source ref
	Commit            string `json:"commit,omitempty"`            // source commit
	Workflow          string `json:"workflow,omitempty"`          // build config (the top-level workflow) URI
	Trigger           string `json:"trigger,omitempty"`           // event that started the run
	RunURL            string `json:"runURL,omitempty"`            // run invocation URI
	RunnerEnvironment string `json:"runnerEnvironment,omitempty"` // github-hosted, self-hosted
}

func newCertificate(s certificate.Summary) *Certificate {
	e := s.Extensions
	return &Certificate{
		Subject: s.SubjectAlternativeName, Issuer: e.Issuer, Repository: e.SourceRepositoryURI,
		Ref: e.SourceRepositoryRef, Commit: e.SourceRepositoryDigest, Workflow: e.BuildConfigURI,
		Trigger: e.BuildTrigger, RunURL: e.RunInvocationURI, RunnerEnvironment: e.RunnerEnvironment,
	}
}

// Signer says who signed, in one phrase: "key cosign.pub (sha256:…)" or
// "https://github.com/o/r/.github/workflows/release.yml@refs/tags/v1
// (issuer https://token.actions.githubusercontent.com)".
func (v Verified) Signer() string {
	switch {
	case v.Certificate != nil:
		return v.Certificate.Subject + " (issuer " + v.Certificate.Issuer + ")"
	case v.Key != "":
		return "key " + v.Key
	}
	return "nobody"
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

// Verify checks that the digest ref names is signed as p requires, and
// reads every place a signature can be: for p's keys, cosign's signatures
// in the .sig manifest and cosign's OCI 1.1 signature referrers; for p's
// keys and identity, Sigstore bundles stored as OCI 1.1 referrers (through
// the referrers API or its tag fallback) as idopipe, cosign v3 (keyed and
// keyless) and actions/attest write them. A bundle counts when
// sigstore-go verifies it (certificate chained to p.Trust, a verified time
// within the certificate's validity, the identity matching) and its
// statement's subjects name this digest, whatever its predicate.
//
// Its error is of class fail.Unsigned and names the image, the digest,
// what the signatures found say and what was required; a registry that
// cannot be read gives the registry's error.
func Verify(ctx context.Context, ref name.Digest, p Policy, access registry.Access, opts ...Option) (Verified, error) {
	var o verifyOptions
	for _, opt := range opts {
		opt(&o)
	}
	v := Verified{Digest: ref.DigestStr()}
	if p.Empty() {
		return v, fail.New(fail.Usage, "give a public key or a certificate identity to verify with", "nothing to verify %s with: no key and no certificate identity", ref)
	}
	if p.Identity != nil {
		if err := p.Identity.Validate(); err != nil {
			return v, err
		}
		if p.Trust == nil {
			return v, fail.New(fail.Usage, "give the Sigstore instance's trusted root", "no trusted root to verify the certificates of %s with", ref)
		}
	}
	bv, err := newBundleVerifier(p)
	if err != nil {
		return v, fail.Wrap(fail.Usage, err, "", "cannot verify %s", ref)
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
	refs, err := referrers(ref, ropts)
	if err != nil {
		return v, access.Explain(err, "read the referrers of", ref)
	}
	required := p.String()
	var found []string // what each signature found says, for the message
	var other string   // a digest a key signature names instead of this one

	if len(p.Keys) > 0 {
		_, entries, err := readEntries(SignatureTag(ref.Context(), h), SimpleSigningMediaType, ropts)
		if err != nil {
			return v, access.Explain(err, "read the signatures of", ref)
		}
		// cosign's OCI 1.1 mode: signature referrers.
		more, err := referrerEntries(ref, refs, ropts)
		if err != nil {
			return v, access.Explain(err, "read the referrers of", ref)
		}
		entries = append(entries, more...)
		for _, e := range entries {
			matched := false
			for _, k := range p.Keys {
				ok, signed := signs(e, k, ref.DigestStr())
				if ok {
					v.Key = k.String()
					return finishVerified(ctx, v, ref, h, p, bv, nil, access, ropts, o)
				}
				if signed != "" {
					other, matched = signed, true
				}
			}
			if !matched {
				found = append(found, "a key signature none of the keys verifies")
			}
		}
	}

	var bundles []storedBundle
	for _, d := range refs {
		if !mayBeBundle(d) {
			continue
		}
		sb, err := readBundle(ref.Context(), d, ropts)
		if err != nil {
			if isNotFound(err) || errors.Is(err, errNotBundle) {
				continue // listed by a stale referrers tag, or another artifact
			}
			return v, access.Explain(err, "read the Sigstore bundles of", ref)
		}
		bundles = append(bundles, sb)
	}
	var matches []bundleMatch
	for _, sb := range bundles {
		m, r := bv.check(sb, h)
		if r.said != "" {
			found = append(found, r.said+": "+r.why)
			continue
		}
		matches = append(matches, m)
	}
	if len(matches) > 0 {
		return finishVerified(ctx, v, ref, h, p, bv, matches, access, ropts, o)
	}

	if other != "" && len(found) == 0 {
		return v, fail.New(fail.Unsigned, "sign this digest; a signature copied from another image does not count",
			"image %s digest %s: its signature by %s is over another digest, %s", ref.Context(), ref.DigestStr(), required, other)
	}
	if len(found) == 0 && other == "" {
		return v, fail.New(fail.Unsigned, "sign it (idopipe push with signing, or cosign sign), or deploy a signed image",
			"image %s is not signed: no signature or Sigstore bundle for %s (required: %s)", ref.Context(), ref.DigestStr(), required)
	}
	if other != "" {
		found = append(found, "a key signature over another digest, "+other)
	}
	return v, fail.New(fail.Unsigned, "deploy an image signed as required, or change what is required",
		"image %s digest %s has %d signature(s), none valid as required: %s; required: %s",
		ref.Context(), ref.DigestStr(), len(found), strings.Join(dedupe(found), "; "), required)
}

// finishVerified fills v from the bundle that matched (a keyless one
// first) and reads the signed provenance when asked.
func finishVerified(ctx context.Context, v Verified, ref name.Digest, h v1.Hash, p Policy, bv *bundleVerifier, matches []bundleMatch,
	access registry.Access, ropts []remote.Option, o verifyOptions) (Verified, error) {
	if len(matches) > 0 {
		best := matches[0]
		for _, m := range matches {
			if m.cert != nil && (best.cert == nil || best.predicate != CosignSignPredicateType && m.predicate == CosignSignPredicateType) {
				best = m
			}
		}
		v.Bundle = best.stored.manifest.String()
		if best.cert != nil {
			v.Certificate = newCertificate(*best.cert)
		} else if best.key != nil {
			v.Key = best.key.String()
		}
		for _, t := range best.times {
			if t.Type == "CurrentTime" {
				continue
			}
			ts := t.Timestamp.UTC()
			v.Timestamp = &ts
			v.TimestampBy = "timestamp authority"
			if t.Type == "Tlog" {
				v.TimestampBy = "Rekor log entry"
			}
			if t.URI != "" {
				v.TimestampBy += " " + t.URI
			}
			break
		}
	}
	if !o.provenance {
		return v, nil
	}
	// Provenance in bundles: every verified SLSA statement among the
	// digest's referrers (keyless signing stores it on the pushed digest).
	for _, m := range matches {
		if !strings.HasPrefix(m.predicate, "https://slsa.dev/provenance/") {
			continue
		}
		if prov, err := parseProvenance(m.statement); err == nil {
			v.Provenance = append(v.Provenance, prov)
		}
	}
	if len(p.Keys) > 0 {
		provs, err := verifiedProvenance(ctx, ref, h, p.Keys, access, ropts)
		if err != nil {
			return v, err
		}
		v.Provenance = append(v.Provenance, provs...)
	}
	if o.sourceRepo != "" {
		if err := checkSource(ref, v.Provenance, o.sourceRepo, p.String()); err != nil {
			return v, err
		}
	}
	return v, nil
}

func dedupe(s []string) []string {
	seen := map[string]int{}
	var out []string
	for _, x := range s {
		if seen[x]++; seen[x] == 1 {
			out = append(out, x)
		}
	}
	for i, x := range out {
		if n := seen[x]; n > 1 {
			out[i] = fmt.Sprintf("%s (×%d)", x, n)
		}
	}
	return out
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
		return fail.New(fail.Unsigned, "build with provenance and sign, so the provenance is signed with the image",
			"image %s digest %s has no provenance signed as required (%s): cannot check its source repository %s", ref.Context(), ref.DigestStr(), tried, repo)
	}
	want := normalizeRepo(repo)
	var seen []string
	for _, p := range provs {
		if normalizeRepo(p.Source) == want {
			return nil
		}
		seen = append(seen, fmt.Sprintf("%q", p.Source))
	}
	return fail.New(fail.Unsigned, "deploy an image built from "+repo+", or require the repository it was built from",
		"image %s digest %s was built from %v, not %s (provenance signed by %s)", ref.Context(), ref.DigestStr(), seen, repo, tried)
}
