package sign

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	rekorclient "github.com/sigstore/rekor-tiles/v2/pkg/client"
	"github.com/sigstore/rekor-tiles/v2/pkg/client/write"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgsign "github.com/sigstore/sigstore-go/pkg/sign"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
)

// Instance is a Sigstore instance to sign with: Fulcio issues the
// certificate, a timestamp authority and/or Rekor prove when it signed.
type Instance struct {
	Name      string // "public-good", "github", "custom"
	FulcioURL string // base URL (the client adds /api/v2/signingCert)
	// RekorURL is the transparency log, "" for none (GitHub's instance);
	// RekorVersion its API: 1 (rekor.sigstore.dev) or 2 (Rekor v2, the
	// tile log, what a self-run instance runs); 0 means 2.
	RekorURL     string
	RekorVersion uint32
	// TSAURL is the timestamp authority, "" for none; a URL without a
	// path gets the timestamp API's, /api/v1/timestamp.
	TSAURL string
	// TrustedRoot is the trusted_root.json to verify with; "" for the
	// instance's TUF-distributed root (public-good only; needs the network).
	TrustedRoot string
}

// KnownInstance is a Sigstore instance GitHub users sign with:
// "public-good" (fulcio.sigstore.dev and rekor.sigstore.dev, what public
// repositories use) or "github" (GitHub's own Fulcio and timestamp
// authority, no log: what actions/attest uses for private repositories).
func KnownInstance(name string) (Instance, error) {
	switch name {
	case "public-good":
		return Instance{Name: name, FulcioURL: "https://fulcio.sigstore.dev", RekorURL: "https://rekor.sigstore.dev", RekorVersion: 1}, nil
	case "github":
		return Instance{Name: name, FulcioURL: "https://fulcio.githubapp.com", TSAURL: "https://timestamp.githubapp.com/api/v1/timestamp"}, nil
	}
	return Instance{}, fail.New(fail.Usage, "use public-good or github, or give the services' URLs and a trusted root", "unknown Sigstore instance %q", name)
}

// String names the instance and its services for messages.
func (i Instance) String() string {
	s := i.Name
	if s == "" {
		s = "custom"
	}
	parts := []string{"Fulcio " + i.FulcioURL}
	if i.TSAURL != "" {
		parts = append(parts, "timestamp authority "+i.TSAURL)
	}
	if i.RekorURL != "" {
		parts = append(parts, "Rekor "+i.RekorURL)
	}
	return s + " (" + strings.Join(parts, ", ") + ")"
}

// KeylessOption tunes NewKeylessSigner.
type KeylessOption func(*keylessOptions)

type keylessOptions struct {
	client *http.Client
	caFile string
	now    func() time.Time
}

// WithHTTPClient is the HTTP client for Fulcio and the timestamp
// authority (its transport; Rekor v2's client takes only the TLS roots).
func WithHTTPClient(c *http.Client) KeylessOption { return func(o *keylessOptions) { o.client = c } }

// WithCA adds the PEM certificates in file to the system roots that the
// Sigstore services' TLS certificates are checked against.
func WithCA(file string) KeylessOption { return func(o *keylessOptions) { o.caFile = file } }

// WithNow is the clock tokens are checked with (time.Now by default).
func WithNow(now func() time.Time) KeylessOption { return func(o *keylessOptions) { o.now = now } }

// KeylessSigner signs pushed digests with a short-lived Fulcio
// certificate for an OIDC token, as cosign v3 and actions/attest do: each
// signature is a Sigstore bundle (v0.3, a DSSE envelope over an in-toto
// statement), timestamped by the instance's timestamp authority and/or
// logged in its Rekor, and stored as an OCI 1.1 referrer of the digest.
type KeylessSigner struct {
	inst   Instance
	tokens TokenSource
	access registry.Access
	trust  root.TrustedMaterial
	fulcio *sgsign.Fulcio
	tsa    *sgsign.TimestampAuthority
	rekor  *sgsign.Rekor
	now    func() time.Time
	// What Fulcio and the timestamp authority last answered when it was
	// not a success: sigstore-go's clients lose it when they give up.
	fulcioAnswer, tsaAnswer *answerRecorder
}

// answerRecorder is a transport that keeps a service's last failing
// answer (status and the start of its body) for the error message.
type answerRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	last string
}

func (a *answerRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(req)
	if err != nil || resp.StatusCode < 300 {
		return resp, err
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	msg := resp.Status
	if body := strings.TrimSpace(fail.OneLine(string(b))); body != "" {
		msg += ": " + body
	}
	a.mu.Lock()
	a.last = msg
	a.mu.Unlock()
	return resp, nil
}

// take returns the last failing answer and forgets it.
func (a *answerRecorder) take() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.last
	a.last = ""
	return s
}

// NewKeylessSigner checks inst and loads its trusted root (reading
// inst.TrustedRoot, or fetching public-good's through TUF); it asks for
// no token and no certificate yet.
func NewKeylessSigner(ctx context.Context, inst Instance, tokens TokenSource, access registry.Access, opts ...KeylessOption) (*KeylessSigner, error) {
	o := keylessOptions{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if tokens == nil {
		return nil, fail.New(fail.Credentials, "give an OIDC identity token (in GitHub Actions: "+fixPermission+")", "no OIDC token source to sign keyless with")
	}
	if inst.FulcioURL == "" {
		return nil, fail.New(fail.Usage, "give Fulcio's URL, or a known instance", "Sigstore instance %s has no Fulcio", inst)
	}
	if inst.TSAURL == "" && inst.RekorURL == "" {
		return nil, fail.New(fail.Usage, "give a timestamp authority or a Rekor log", "Sigstore instance %s has neither a timestamp authority nor a transparency log: nothing would prove a signature was made while its short-lived certificate was valid", inst)
	}
	for what, u := range map[string]string{"Fulcio": inst.FulcioURL, "timestamp authority": inst.TSAURL, "Rekor": inst.RekorURL} {
		if u == "" {
			continue
		}
		if p, err := url.Parse(u); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return nil, fail.New(fail.Usage, "give an http(s) URL", "%s URL %q is not an http(s) URL", what, u)
		}
	}
	tlsConfig, err := serviceTLS(o.caFile)
	if err != nil {
		return nil, err
	}
	transport := http.RoundTripper(nil)
	if o.client != nil {
		transport = o.client.Transport
	}
	if transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = tlsConfig
		transport = t
	}
	s := &KeylessSigner{inst: inst, tokens: tokens, access: access, now: o.now,
		fulcioAnswer: &answerRecorder{next: transport}, tsaAnswer: &answerRecorder{next: transport}}
	s.trust, err = instanceTrust(ctx, inst)
	if err != nil {
		return nil, err
	}
	s.fulcio = sgsign.NewFulcio(&sgsign.FulcioOptions{BaseURL: strings.TrimSuffix(inst.FulcioURL, "/"), Retries: 1, Transport: s.fulcioAnswer})
	if inst.TSAURL != "" {
		s.tsa = sgsign.NewTimestampAuthority(&sgsign.TimestampAuthorityOptions{URL: tsaEndpoint(inst.TSAURL), Retries: 1, Transport: s.tsaAnswer})
	}
	if inst.RekorURL != "" {
		ro := &sgsign.RekorOptions{BaseURL: strings.TrimSuffix(inst.RekorURL, "/"), Retries: 1, Version: inst.RekorVersion}
		if ro.Version == 0 {
			ro.Version = 2
		}
		if ro.Version == 2 {
			// sigstore-go makes Rekor v2's writer when none is given, with
			// the system roots only: give it the services' roots.
			w, err := write.NewWriter(ro.BaseURL, rekorclient.WithTLSConfig(tlsConfig), rekorclient.WithTimeout(30*time.Second))
			if err != nil {
				return nil, fail.Wrap(fail.Usage, err, "", "Rekor %s", inst.RekorURL)
			}
			ro.ClientV2 = w
		}
		s.rekor = sgsign.NewRekor(ro)
	}
	return s, nil
}

// tsaEndpoint is the timestamp API's URL: the path given, else the
// timestamp authority's /api/v1/timestamp.
func tsaEndpoint(u string) string {
	p, err := url.Parse(u)
	if err != nil || (p.Path != "" && p.Path != "/") {
		return u
	}
	return strings.TrimSuffix(u, "/") + "/api/v1/timestamp"
}

// serviceTLS is the TLS configuration for the Sigstore services: the
// system roots and, with caFile, its certificates.
func serviceTLS(caFile string) (*tls.Config, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fail.Wrap(fail.Usage, errors.Unwrap(err), "check the Sigstore services' CA path", "cannot read Sigstore CA %s", caFile)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fail.New(fail.Usage, "give a PEM certificate", "Sigstore CA %s holds no PEM certificate", caFile)
		}
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// instanceTrust is the instance's trusted root: the file named, or
// public-good's from Sigstore's TUF repository.
func instanceTrust(_ context.Context, inst Instance) (root.TrustedMaterial, error) {
	if inst.TrustedRoot != "" {
		return LoadTrustedRoot(inst.TrustedRoot)
	}
	if inst.Name != "public-good" {
		return nil, fail.New(fail.Usage, "give the instance's trusted_root.json (for GitHub's: gh attestation trusted-root)",
			"no trusted root for Sigstore instance %s", inst)
	}
	tr, err := root.FetchTrustedRoot()
	if err != nil {
		return nil, fail.Wrap(fail.Sigstore, err, "check the network, or give the trusted_root.json", "cannot fetch public-good's trusted root from Sigstore's TUF repository")
	}
	return tr, nil
}

// Trust is the trusted root the signer verifies what it made with: the
// one a verifier of its signatures needs too.
func (s *KeylessSigner) Trust() root.TrustedMaterial { return s.trust }

// Sign signs the image or index ref names: each platform image of an
// index, BuildKit's SLSA provenance (one bundle per statement, with the
// pushed digest added to its subjects, stored on the pushed digest so that
// gh attestation verify oci://REF finds it), then the pushed digest last.
// What an earlier run stored and this signer's own identity verifies is
// not signed again (counted in Already); a rerun after a failure completes
// what is missing.
func (s *KeylessSigner) Sign(ctx context.Context, ref name.Digest) (Result, error) {
	var res Result
	tok, err := s.tokens.Token(ctx)
	if err != nil {
		return res, err
	}
	claims, err := checkClaims(s.tokens, tok, s.now())
	if err != nil {
		return res, err
	}
	res.Identity = claims.SAN()
	// The signer's own policy: what it signs, it accepts; what it
	// accepts, it need not sign again.
	own, err := newBundleVerifier(Policy{Identity: &Identity{Issuer: claims.Issuer, Subject: claims.SAN()}, Trust: s.trust})
	if err != nil {
		return res, fail.Wrap(fail.Usage, err, "", "trusted root of %s", s.inst)
	}
	base, err := s.access.Options(ctx)
	if err != nil {
		return res, err
	}
	opts := contextOpts(ctx, base)
	f, err := s.access.Fetch(ref, opts, "read")
	if err != nil {
		return res, err
	}
	top := v1.Descriptor{MediaType: f.MediaType, Digest: f.Digest, Size: f.Size}
	if top.Digest.String() != ref.DigestStr() {
		return res, fail.New(fail.Usage, "give the digest as sha256: and 64 hex digits", "bad digest in %s", ref)
	}
	var children []v1.Descriptor
	var statements [][]byte
	for _, d := range f.Manifests {
		if !isAttestation(d) {
			children = append(children, d)
			continue
		}
		sts, err := provenanceStatements(f.Index, d)
		if err != nil {
			return res, s.access.Explain(err, "read the provenance of", ref)
		}
		for _, st := range sts {
			st, err := addSubject(st, ref.Context().Name(), top.Digest)
			if err != nil {
				return res, fail.Wrap(fail.Build, err, "", "BuildKit's provenance of %s", ref)
			}
			statements = append(statements, st)
		}
	}
	keypair, err := sgsign.NewEphemeralKeypair(nil)
	if err != nil {
		return res, fail.Wrap(fail.Internal, err, "", "cannot make a signing key")
	}
	run := &signRun{s: s, keypair: keypair, first: tok, ctx: ctx}
	repo := ref.Context()
	existing := map[string][]bundleMatch{} // by subject digest
	verified := func(d v1.Descriptor) ([]bundleMatch, error) {
		if m, ok := existing[d.Digest.String()]; ok {
			return m, nil
		}
		m, err := storedMatches(repo.Digest(d.Digest.String()), d.Digest, own, opts)
		if err != nil {
			return nil, s.access.Explain(err, "read the Sigstore bundles of", repo.Digest(d.Digest.String()))
		}
		existing[d.Digest.String()] = m
		return m, nil
	}
	store := func(d v1.Descriptor, statement []byte, predicateType string) error {
		b, err := run.bundle(statement)
		if err != nil {
			return err
		}
		h, err := writeBundle(repo, d, b, predicateType, s.now(), opts)
		if err != nil {
			return storeError(s.access, err, repo.Digest(d.Digest.String()))
		}
		res.Bundles = append(res.Bundles, h.String())
		return nil
	}

	for _, st := range statements {
		ms, err := verified(top)
		if err != nil {
			return res, err
		}
		res.Attestations++
		if hasStatement(ms, st) {
			res.Already++
			continue
		}
		var head struct {
			PredicateType string `json:"predicateType"`
		}
		_ = json.Unmarshal(st, &head)
		if err := store(top, st, head.PredicateType); err != nil {
			return res, err
		}
	}
	for _, d := range append(children, top) {
		ms, err := verified(d)
		if err != nil {
			return res, err
		}
		st := cosignStatement(d.Digest)
		if hasPredicate(ms, CosignSignPredicateType) {
			res.Already++
		} else if err := store(d, st, CosignSignPredicateType); err != nil {
			return res, err
		}
		res.Digests = append(res.Digests, d.Digest.String())
	}
	// The pushed digest first.
	res.Digests = append([]string{top.Digest.String()}, res.Digests[:len(res.Digests)-1]...)
	return res, nil
}

// storedMatches are the bundles stored for d that bv accepts.
func storedMatches(d name.Digest, h v1.Hash, bv *bundleVerifier, opts []remote.Option) ([]bundleMatch, error) {
	refs, err := referrers(d, opts)
	if err != nil {
		return nil, err
	}
	var out []bundleMatch
	for _, desc := range refs {
		if !mayBeBundle(desc) {
			continue
		}
		sb, err := readBundle(d.Context(), desc, opts)
		if err != nil {
			if isNotFound(err) || errors.Is(err, errNotBundle) {
				continue
			}
			return nil, err
		}
		if m, r := bv.check(sb, h); r.said == "" {
			out = append(out, m)
		}
	}
	return out, nil
}

func hasPredicate(ms []bundleMatch, predicateType string) bool {
	for _, m := range ms {
		if m.predicate == predicateType {
			return true
		}
	}
	return false
}

func hasStatement(ms []bundleMatch, st []byte) bool {
	for _, m := range ms {
		if string(m.statement) == string(st) {
			return true
		}
	}
	return false
}

// cosignStatement is the in-toto statement cosign v3 signs for an image
// digest: the digest its subject, cosign's sign predicate type, an empty
// predicate.
func cosignStatement(d v1.Hash) []byte {
	st := map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"digest": map[string]string{d.Algorithm: d.Hex}}},
		"predicateType": CosignSignPredicateType,
		"predicate":     map[string]any{},
	}
	b, _ := json.Marshal(st)
	return b
}

// addSubject adds the pushed digest (named after repo) to the subjects of
// BuildKit's provenance statement, which names the platform image only:
// gh attestation verify oci://REF looks for a statement about REF's
// digest. BuildKit's subjects stay first.
func addSubject(statement []byte, repo string, d v1.Hash) ([]byte, error) {
	var st map[string]any
	if err := json.Unmarshal(statement, &st); err != nil {
		return nil, err
	}
	subjects, _ := st["subject"].([]any)
	for _, s := range subjects {
		if m, ok := s.(map[string]any); ok {
			if dg, ok := m["digest"].(map[string]any); ok && dg[d.Algorithm] == d.Hex {
				return json.Marshal(st)
			}
		}
	}
	st["subject"] = append(subjects, map[string]any{"name": repo, "digest": map[string]string{d.Algorithm: d.Hex}})
	return json.Marshal(st)
}

// signRun is one Sign call's key pair and certificate: one certificate
// (asked for once, again only when it is about to expire) signs every
// bundle of the run, as cosign signs an index.
type signRun struct {
	s       *KeylessSigner
	ctx     context.Context
	keypair sgsign.Keypair
	first   string // the token checked at the start; later certificates take a fresh one

	mu   sync.Mutex
	cert []byte
	exp  time.Time
}

// GetCertificate is sigstore-go's CertificateProvider: Fulcio's
// certificate for the run's key pair.
func (r *signRun) GetCertificate(ctx context.Context, kp sgsign.Keypair, _ *sgsign.CertificateProviderOptions) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cert != nil && r.s.now().Add(time.Minute).Before(r.exp) {
		return r.cert, nil
	}
	tok := r.first
	if r.cert != nil {
		var err error
		if tok, err = r.s.tokens.Token(ctx); err != nil {
			return nil, err
		}
	}
	r.s.fulcioAnswer.take()
	der, err := r.s.fulcio.GetCertificate(ctx, kp, &sgsign.CertificateProviderOptions{IDToken: tok})
	if err != nil {
		if a := r.s.fulcioAnswer.take(); a != "" {
			err = answered{a, err}
		}
		return nil, serviceError{service: "Fulcio", url: r.s.inst.FulcioURL, err: err}
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, serviceError{service: "Fulcio", url: r.s.inst.FulcioURL, err: fmt.Errorf("answered no certificate: %w", err)}
	}
	r.cert, r.exp = der, c.NotAfter
	return der, nil
}

// rekorLog is sigstore-go's Rekor, its failures named.
type rekorLog struct {
	r   *sgsign.Rekor
	url string
}

func (l rekorLog) GetTransparencyLogEntry(ctx context.Context, pem []byte, b *protobundle.Bundle) error {
	if err := l.r.GetTransparencyLogEntry(ctx, pem, b); err != nil {
		return serviceError{service: "Rekor", url: l.url, err: err}
	}
	return nil
}

// serviceError is a Sigstore service's failure.
type serviceError struct {
	service, url string
	err          error
}

func (e serviceError) Error() string { return e.service + " " + e.url + ": " + e.err.Error() }
func (e serviceError) Unwrap() error { return e.err }

// bundle signs statement (an in-toto statement) into a Sigstore bundle's
// JSON with sigstore-go: the run's certificate, the timestamp authority's
// timestamp, Rekor's entry, then a check of the whole against the trusted
// root.
func (r *signRun) bundle(statement []byte) ([]byte, error) {
	s := r.s
	opts := sgsign.BundleOptions{
		CertificateProvider:        r,
		CertificateProviderOptions: &sgsign.CertificateProviderOptions{},
		Context:                    r.ctx,
		TrustedRoot:                s.trust,
	}
	if s.tsa != nil {
		opts.TimestampAuthorities = []*sgsign.TimestampAuthority{s.tsa}
	}
	if s.rekor != nil {
		opts.TransparencyLogs = []sgsign.Transparency{rekorLog{r: s.rekor, url: s.inst.RekorURL}}
	}
	s.tsaAnswer.take()
	pb, err := sgsign.Bundle(&sgsign.DSSEData{Data: statement, PayloadType: InTotoPayloadType}, r.keypair, opts)
	if err != nil {
		return nil, s.signError(err)
	}
	return protojson.Marshal(pb)
}

// fixUnsigned is what to do when signing failed after the push.
const fixUnsigned = "the image is pushed but not signed: rerun once the service answers (the image is not pushed again, the signature is completed)"

// signError classifies a failure of sigstore-go's Bundle: the service that
// failed, named with its URL and answer (class Sigstore), or the token.
func (s *KeylessSigner) signError(err error) error {
	if fail.ClassOf(err) != fail.Internal {
		return err // a token source's own error
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var se serviceError
	var an answered
	if errors.As(err, &se) && se.service == "Fulcio" && errors.As(err, &an) &&
		(strings.HasPrefix(an.answer, "401") || strings.HasPrefix(an.answer, "403")) {
		return fail.WithCause(fail.Credentials, err, "give a valid, unexpired token of an issuer this Fulcio trusts, with audience sigstore",
			"Fulcio %s refused the OIDC token from %s: %s", se.url, s.tokens, an.answer)
	}
	if errors.As(err, &se) {
		what := "refused"
		if isUnreachable(se.err) {
			what = "is unreachable"
		}
		return fail.WithCause(fail.Sigstore, err, fixUnsigned, "%s %s %s: %s", se.service, se.url, what, answer(se.err))
	}
	// Neither Fulcio nor Rekor (both wrapped): the timestamp authority
	// (asked between them), or the check of the bundle made against the
	// trusted root.
	if s.tsa != nil {
		if a := s.tsaAnswer.take(); a != "" {
			return fail.WithCause(fail.Sigstore, err, fixUnsigned, "timestamp authority %s refused: %s", tsaEndpoint(s.inst.TSAURL), a)
		}
		if isUnreachable(err) {
			return fail.WithCause(fail.Sigstore, err, fixUnsigned, "timestamp authority %s is unreachable: %s", tsaEndpoint(s.inst.TSAURL), answer(err))
		}
		if strings.Contains(err.Error(), "timestamp") && !strings.Contains(err.Error(), "verify") {
			return fail.WithCause(fail.Sigstore, err, fixUnsigned, "timestamp authority %s refused: %s", tsaEndpoint(s.inst.TSAURL), answer(err))
		}
	}
	return fail.WithCause(fail.Sigstore, err, "give the trusted root of the instance that signed ("+s.inst.String()+")",
		"the bundle Sigstore made does not verify against the trusted root: %s", firstLine(err))
}

func isUnreachable(err error) bool {
	var ue *url.Error
	return errors.As(err, &ue)
}

// answered is a service's failing answer, kept beside the client's error.
type answered struct {
	answer string
	err    error
}

func (a answered) Error() string { return "answered " + a.answer }
func (a answered) Unwrap() error { return a.err }

// answer is what a service answered, on one line, without the request
// URL net/http puts in front of a transport error.
func answer(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return fail.OneLine(err.Error())
}
