package sign

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
)

// CosignSignPredicateType is the predicate type of the in-toto statement
// cosign v3 signs for an image (cosign sign with the bundle format): the
// statement's subject is the image digest, the predicate empty.
const CosignSignPredicateType = "https://sigstore.dev/cosign/sign/v1"

// bundleVerifier checks stored bundles against a policy with sigstore-go:
// certificates chained to the policy's trusted root, with a verified time
// (timestamp authority or log entry) inside the certificate's validity,
// and the statement's subjects naming the digest; keys as cosign's keyed
// bundles carry them.
type bundleVerifier struct {
	p        Policy
	identity verify.CertificateIdentity
	keyless  *verify.Verifier // nil without an identity
	keyed    []keyedVerifier
}

type keyedVerifier struct {
	key Key
	v   *verify.Verifier
}

// bundleMatch is a stored bundle that the policy accepts.
type bundleMatch struct {
	stored    storedBundle
	key       *Key                 // the key that verified it, for a keyed bundle
	cert      *certificate.Summary // its certificate, for a keyless one
	times     []verify.TimestampVerificationResult
	predicate string // the statement's predicate type
	statement []byte // the statement, as signed
}

func newBundleVerifier(p Policy) (*bundleVerifier, error) {
	bv := &bundleVerifier{p: p}
	if p.Identity != nil {
		if p.Trust == nil {
			return nil, errors.New("a certificate identity needs a trusted root to verify with")
		}
		ci, err := p.Identity.certificateIdentity()
		if err != nil {
			return nil, err
		}
		bv.identity = ci
		if bv.keyless, err = verify.NewVerifier(p.Trust, trustOptions(p.Trust)...); err != nil {
			return nil, fmt.Errorf("trusted root: %w", err)
		}
	}
	for _, k := range p.Keys {
		k := k
		tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
			return root.NewExpiringKey(k.v, time.Time{}, time.Time{}), nil
		})
		// A key is its own trust: as today's key signatures, the log
		// entry or timestamp a keyed bundle may carry is not required.
		v, err := verify.NewVerifier(tm, verify.WithNoObserverTimestamps())
		if err != nil {
			return nil, err
		}
		bv.keyed = append(bv.keyed, keyedVerifier{key: k, v: v})
	}
	return bv, nil
}

// trustOptions are what a trusted root demands, as gh infers them for a
// custom root: a verified time from a timestamp authority or a log; a log
// entry when the root names a log; an SCT when it names a CT log.
func trustOptions(tm root.TrustedMaterial) []verify.VerifierOption {
	opts := []verify.VerifierOption{verify.WithObserverTimestamps(1)}
	if len(tm.RekorLogs()) > 0 {
		opts = append(opts, verify.WithTransparencyLog(1))
	}
	if len(tm.CTLogs()) > 0 {
		opts = append(opts, verify.WithSignedCertificateTimestamps(1))
	}
	return opts
}

// check verifies one stored bundle for digest. A refusal says what the
// bundle carries (its certificate's identity, or a key) and why.
func (bv *bundleVerifier) check(sb storedBundle, digest v1.Hash) (bundleMatch, refusal) {
	var b bundle.Bundle
	if err := b.UnmarshalJSON(sb.content); err != nil {
		return bundleMatch{}, refusal{said: "an unreadable bundle", why: firstLine(err)}
	}
	vc, err := b.VerificationContent()
	if err != nil {
		return bundleMatch{}, refusal{said: "a bundle without verification material", why: firstLine(err)}
	}
	raw, err := hex.DecodeString(digest.Hex)
	if err != nil {
		return bundleMatch{}, refusal{said: "a bundle", why: "bad digest"}
	}
	artifact := verify.WithArtifactDigest(digest.Algorithm, raw)
	m := bundleMatch{stored: sb}
	if cert := vc.Certificate(); cert != nil {
		said := "a certificate"
		summary, serr := certificate.SummarizeCertificate(cert)
		if serr == nil {
			said = describeCertificate(summary)
		}
		if bv.keyless == nil {
			return m, refusal{said: said, why: "no certificate identity is accepted"}
		}
		res, err := bv.keyless.Verify(&b, verify.NewPolicy(artifact, verify.WithCertificateIdentity(bv.identity)))
		if err != nil {
			return m, refusal{said: said, why: explainVerify(err, &b, cert.NotAfter)}
		}
		if err := bv.p.Identity.checkExtensions(*res.Signature.Certificate); err != nil {
			return m, refusal{said: said, why: err.Error()}
		}
		m.cert, m.times = res.Signature.Certificate, res.VerifiedTimestamps
		return m.withStatement(&b, res), refusal{}
	}
	if len(bv.keyed) == 0 {
		return m, refusal{said: "a key signature", why: "no key is accepted"}
	}
	var last error
	for _, kv := range bv.keyed {
		res, err := kv.v.Verify(&b, verify.NewPolicy(artifact, verify.WithKey()))
		if err != nil {
			last = err
			continue
		}
		k := kv.key
		m.key, m.times = &k, res.VerifiedTimestamps
		return m.withStatement(&b, res), refusal{}
	}
	return m, refusal{said: "a key signature", why: "no key given verifies it (" + explainVerify(last, &b, time.Time{}) + ")"}
}

// withStatement keeps the verified statement's predicate type and bytes.
func (m bundleMatch) withStatement(b *bundle.Bundle, res *verify.VerificationResult) bundleMatch {
	if res.Statement != nil {
		m.predicate = res.Statement.GetPredicateType()
	}
	if sc, err := b.SignatureContent(); err == nil && sc.EnvelopeContent() != nil {
		if body, err := sc.EnvelopeContent().RawEnvelope().DecodeB64Payload(); err == nil {
			m.statement = body
		}
	}
	return m
}

// refusal is why a stored bundle does not count.
type refusal struct {
	said string // what it carries: "a certificate for SAN … issued by …"
	why  string
}

func describeCertificate(s certificate.Summary) string {
	d := "a certificate for " + s.SubjectAlternativeName + " issued by " + orNone(s.Extensions.Issuer)
	if s.Extensions.SourceRepositoryURI != "" {
		d += " (repository " + s.Extensions.SourceRepositoryURI
		if s.Extensions.SourceRepositoryRef != "" {
			d += " ref " + s.Extensions.SourceRepositoryRef
		}
		d += ")"
	}
	return d
}

// explainVerify says in a few words why sigstore-go refused a bundle,
// naming the certificate's expiry when no verified time covers it.
func explainVerify(err error, b *bundle.Bundle, notAfter time.Time) string {
	if err == nil {
		return "refused"
	}
	msg := firstLine(err)
	switch {
	case strings.Contains(msg, "threshold not met") || strings.Contains(msg, "must provide timestamp"):
		if !notAfter.IsZero() && !hasTimestamps(b) {
			return fmt.Sprintf("no timestamp or log entry proves it was signed while its certificate was valid (until %s)", notAfter.UTC().Format(time.RFC3339))
		}
		return "no verified timestamp or log entry: " + msg
	case strings.Contains(msg, "failed to verify certificate identity"):
		if _, last, ok := strings.Cut(msg, "last error: "); ok {
			msg = last
		}
		return "another identity (" + msg + ")"
	case strings.Contains(msg, "artifact digest") || strings.Contains(msg, "subject"):
		return "it is not about this digest (its statement names others)"
	case strings.Contains(msg, "could not verify envelope") || strings.Contains(msg, "failed to verify signature"):
		return "its signature does not verify (altered after signing, or not made by its certificate's key)"
	}
	return msg
}

func hasTimestamps(b *bundle.Bundle) bool {
	ts, _ := b.Timestamps()
	tl, _ := b.TlogEntries()
	return len(ts) > 0 || len(tl) > 0
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
