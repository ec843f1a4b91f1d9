package sign

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
)

// Result is what Image signed.
type Result struct {
	// Digests are the manifests signed: the pushed digest, then each
	// platform image of an index.
	Digests []string `json:"digests"`
	// Attestations is how many provenance statements were signed.
	Attestations int `json:"attestations"`
	// Already counts the signatures (and attestations) that an earlier
	// run stored and that were not made again.
	Already int    `json:"already"`
	Key     string `json:"key,omitempty"` // the key signer's key: file (sha256:…)
	// Identity is the keyless signer's certificate SAN (the workflow, for
	// GitHub Actions).
	Identity string `json:"identity,omitempty"`
	// Bundles are the digests of the bundle referrers written.
	Bundles []string `json:"bundles,omitempty"`
}

// String is the one-line summary.
func (r Result) String() string {
	by := r.Key
	if r.Identity != "" {
		by = "a certificate for " + r.Identity
	}
	s := fmt.Sprintf("signed %d manifest(s) with %s", len(r.Digests), by)
	if r.Attestations > 0 {
		s += fmt.Sprintf(", %d provenance attestation(s)", r.Attestations)
	}
	if r.Already > 0 {
		s += fmt.Sprintf(" (%d already signed)", r.Already)
	}
	return s
}

// Image signs the image or index ref names, as cosign sign --recursive
// would: each platform image of an index, then the index itself (last, so
// that an image whose signing failed halfway is not signed at the top).
// BuildKit's SLSA provenance attestations in the index are signed too, as
// in-toto statements in DSSE envelopes in the .att manifest of the image
// each is about.
// Signatures this signer stored before are kept and not made again: a rerun
// after a failure completes what is missing and pushes nothing else.
func Image(ctx context.Context, ref name.Digest, s Signer, access registry.Access) (Result, error) {
	res := Result{Key: s.Key().String()}
	base, err := access.Options(ctx)
	if err != nil {
		return res, err
	}
	opts := contextOpts(ctx, base)
	f, err := access.Fetch(ref, opts, "read")
	if err != nil {
		return res, err
	}
	top, err := v1.NewHash(ref.DigestStr())
	if err != nil {
		return res, fail.New(fail.Usage, "give the digest as sha256: and 64 hex digits", "bad digest in %s", ref)
	}
	var children []v1.Hash
	var statements []attestation
	for _, d := range f.Manifests {
		if !isAttestation(d) {
			children = append(children, d.Digest)
			continue
		}
		sts, err := provenanceStatements(f.Index, d)
		if err != nil {
			return res, access.Explain(err, "read the provenance of", ref)
		}
		for _, st := range sts {
			// Stored with the image it is about (its subject), where
			// cosign verify-attestation finds and accepts it.
			subject, err := v1.NewHash(d.Annotations[build.AnnotationReferenceDigest])
			if p, perr := parseProvenance(st); perr == nil && p.Subject != "" {
				subject, err = v1.NewHash(p.Subject)
			}
			if err != nil {
				subject = top
			}
			statements = append(statements, attestation{subject: subject, statement: st})
		}
	}
	repo := ref.Context()
	for _, a := range statements {
		already, err := attest(ctx, repo, a.subject, a.statement, s, opts)
		if err != nil {
			return res, storeError(access, err, AttestationTag(repo, a.subject))
		}
		res.Attestations++
		if already {
			res.Already++
		}
	}
	for _, d := range append(children, top) {
		already, err := signDigest(ctx, repo.Digest(d.String()), s, opts)
		if err != nil {
			return res, storeError(access, err, SignatureTag(repo, d))
		}
		res.Digests = append(res.Digests, d.String())
		if already {
			res.Already++
		}
	}
	// The pushed digest first.
	res.Digests = append([]string{top.String()}, res.Digests[:len(res.Digests)-1]...)
	return res, nil
}

// attestation is a provenance statement and the digest it is about.
type attestation struct {
	subject   v1.Hash
	statement []byte
}

// storeError says which signature could not be stored, and that the image
// is not signed until a rerun stores it.
func storeError(access registry.Access, err error, tag name.Reference) error {
	err = access.Explain(err, "signature push", tag)
	return fail.Wrap(fail.ClassOf(err), err, "rerun: the image is not pushed again, the signature is completed", "the image is pushed but not signed")
}

// signDigest stores a signature of d in d's .sig manifest, unless one
// made by s is there already (reported as true).
func signDigest(ctx context.Context, d name.Digest, s Signer, opts []remote.Option) (bool, error) {
	h, _ := v1.NewHash(d.DigestStr())
	tag := SignatureTag(d.Context(), h)
	base, entries, err := readEntries(tag, SimpleSigningMediaType, opts)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if ok, _ := signs(e, s.Key(), d.DigestStr()); ok {
			return true, nil
		}
	}
	body, err := json.Marshal(payload.Cosign{Image: d})
	if err != nil {
		return false, err
	}
	sig, err := s.Sign(ctx, body)
	if err != nil {
		return false, fmt.Errorf("sign %s: %w", d, err)
	}
	ann := map[string]string{SignatureAnnotation: base64.StdEncoding.EncodeToString(sig.Sig)}
	if len(sig.Cert) > 0 {
		ann["dev.sigstore.cosign/certificate"] = string(sig.Cert)
		ann["dev.sigstore.cosign/chain"] = string(sig.Chain)
	}
	return false, appendEntry(tag, base, body, SimpleSigningMediaType, ann, opts)
}

// attest stores statement, signed by s in a DSSE envelope, in the .att
// manifest of d, unless s signed the same statement there already.
func attest(ctx context.Context, repo name.Repository, d v1.Hash, statement []byte, s Signer, opts []remote.Option) (bool, error) {
	tag := AttestationTag(repo, d)
	base, entries, err := readEntries(tag, DSSEMediaType, opts)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if body, err := openEnvelope(ctx, e.payload, []Key{s.Key()}); err == nil && bytes.Equal(body, statement) {
			return true, nil
		}
	}
	es, err := dsse.NewEnvelopeSigner(dsseSigner{ctx: ctx, s: s})
	if err != nil {
		return false, err
	}
	env, err := es.SignPayload(ctx, InTotoPayloadType, statement)
	if err != nil {
		return false, fmt.Errorf("sign the provenance of %s: %w", d, err)
	}
	b, err := json.Marshal(env)
	if err != nil {
		return false, err
	}
	var head struct {
		PredicateType string `json:"predicateType"`
	}
	_ = json.Unmarshal(statement, &head)
	ann := map[string]string{SignatureAnnotation: "", "predicateType": head.PredicateType}
	return false, appendEntry(tag, base, b, DSSEMediaType, ann, opts)
}

// dsseSigner lets go-securesystemslib's envelope signer use a Signer; it
// names no key id, as cosign's envelopes do not.
type dsseSigner struct {
	ctx context.Context
	s   Signer
}

func (d dsseSigner) Sign(ctx context.Context, data []byte) ([]byte, error) {
	sig, err := d.s.Sign(ctx, data)
	return sig.Sig, err
}

func (dsseSigner) KeyID() (string, error) { return "", nil }

// dsseVerifier checks envelope signatures with a Key.
type dsseVerifier struct{ k Key }

func (d dsseVerifier) Verify(_ context.Context, data, sig []byte) error { return d.k.check(sig, data) }
func (dsseVerifier) KeyID() (string, error)                             { return "", nil }
func (d dsseVerifier) Public() crypto.PublicKey {
	pub, _ := d.k.v.PublicKey()
	return pub
}

// openEnvelope checks a DSSE envelope against keys and returns the
// statement it carries.
func openEnvelope(ctx context.Context, b []byte, keys []Key) ([]byte, error) {
	var env dsse.Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, err
	}
	if env.PayloadType != InTotoPayloadType {
		return nil, fmt.Errorf("payload type %q, not %q", env.PayloadType, InTotoPayloadType)
	}
	var vs []dsse.Verifier
	for _, k := range keys {
		vs = append(vs, dsseVerifier{k})
	}
	ev, err := dsse.NewEnvelopeVerifier(vs...)
	if err != nil {
		return nil, err
	}
	_, body, err := ev.VerifyAndDecode(ctx, &env)
	return body, err
}

// ImageSigner signs pushed digests with one key in one registry: the
// pipeline's push stage calls it through a one-method interface.
type ImageSigner struct {
	signer Signer
	access registry.Access
}

// NewImageSigner is an ImageSigner for s, storing signatures through access.
func NewImageSigner(s Signer, access registry.Access) *ImageSigner {
	return &ImageSigner{signer: s, access: access}
}

// Sign signs ref (see Image).
func (s *ImageSigner) Sign(ctx context.Context, ref name.Digest) (Result, error) {
	return Image(ctx, ref, s.signer, s.access)
}
