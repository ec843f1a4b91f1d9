package sign_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// fakeSigstore stands in for Fulcio, a timestamp authority and the OIDC
// issuer GitHub Actions would be, on loopback: httptest servers speaking
// Fulcio's REST API (POST /api/v2/signingCert: the bearer token's RS256
// signature and the proof of possession checked, a certificate with the
// SAN and GitHub extensions Fulcio's github-workflow type writes) and
// RFC 3161 (POST /api/v1/timestamp), so that the signer runs sigstore-go's
// real Fulcio and timestamp clients. The CA material comes from
// sigstore-go's pkg/testing/ca.
type fakeSigstore struct {
	t           *testing.T
	fulcio, tsa *httptest.Server
	trustedRoot string // path of the trusted_root.json naming both
	issuerKey   *rsa.PrivateKey

	caRoot, fulcioInter *x509.Certificate
	fulcioKey           *ecdsa.PrivateKey
	tsaLeaf             *x509.Certificate
	tsaKey              *ecdsa.PrivateKey

	mu sync.Mutex
	// certWindow shifts a certificate's validity: NotBefore = now+start,
	// NotAfter = NotBefore+lifetime (Fulcio's: 10 minutes).
	certStart, certLifetime time.Duration
	fulcioDown, tsaDown     bool
	fulcioCalls, tsaCalls   atomic.Int32
}

const githubIssuer = "https://token.actions.githubusercontent.com"

func newFakeSigstore(t *testing.T) *fakeSigstore {
	t.Helper()
	f := &fakeSigstore{t: t, certLifetime: 10 * time.Minute}
	var err error
	if f.issuerKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	// The Fulcio CA's own root and intermediate, as Fulcio's ephemeral CA
	// names them (organization "sigstore"): gh picks its verification
	// policy by the organization, and "sigstore.dev" (pkg/testing/ca's)
	// would make it demand public-good's SCTs and log entries.
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rootCert := f.caCert(&x509.Certificate{Subject: pkix.Name{CommonName: "test root", Organization: []string{"sigstore"}},
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, nil, rootKey, rootKey)
	f.caRoot = rootCert
	if f.fulcioKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	f.fulcioInter = f.caCert(&x509.Certificate{Subject: pkix.Name{CommonName: "test fulcio", Organization: []string{"sigstore"}},
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}, rootCert, f.fulcioKey, rootKey)
	tsaInter, tsaInterKey, err := ca.GenerateTSAIntermediate(rootCert, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	if f.tsaKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if f.tsaLeaf, err = ca.GenerateTSALeafCert(time.Now().Add(-5*time.Minute), f.tsaKey, tsaInter, tsaInterKey); err != nil {
		t.Fatal(err)
	}
	f.fulcio = httptest.NewServer(http.HandlerFunc(f.serveFulcio))
	f.tsa = httptest.NewServer(http.HandlerFunc(f.serveTSA))
	t.Cleanup(f.fulcio.Close)
	t.Cleanup(f.tsa.Close)

	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01,
		[]root.CertificateAuthority{&root.FulcioCertificateAuthority{
			Root: rootCert, Intermediates: []*x509.Certificate{f.fulcioInter},
			ValidityPeriodStart: time.Now().Add(-time.Hour), URI: f.fulcio.URL,
		}}, nil,
		[]root.TimestampingAuthority{&root.SigstoreTimestampingAuthority{
			Root: rootCert, Intermediates: []*x509.Certificate{tsaInter}, Leaf: f.tsaLeaf,
			ValidityPeriodStart: time.Now().Add(-time.Hour), URI: f.tsa.URL,
		}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	// One line ending in a newline: gh reads trusted roots as JSON lines
	// and ignores a last line without its newline.
	f.trustedRoot = filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(f.trustedRoot, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// claims are a GitHub Actions token's, for repository o/r's workflow file
// on a ref.
type claims map[string]any

func githubClaims(repo, workflow, ref string) claims {
	owner, _, _ := strings.Cut(repo, "/")
	return claims{
		"iss": githubIssuer, "aud": "sigstore", "sub": "repo:" + repo + ":ref:" + ref,
		"exp": time.Now().Add(5 * time.Minute).Unix(), "iat": time.Now().Unix(),
		"repository": repo, "repository_owner": owner, "ref": ref, "sha": "0123456789abcdef0123456789abcdef01234567",
		"workflow": "release", "job_workflow_ref": repo + "/.github/workflows/" + workflow + "@" + ref,
		"workflow_ref": repo + "/.github/workflows/" + workflow + "@" + ref, "event_name": "push",
		"run_id": "42", "run_attempt": "1", "runner_environment": "github-hosted", "repository_visibility": "private",
	}
}

// token is an RS256 JWT of c signed by the issuer's key.
func (f *fakeSigstore) token(c claims) string {
	f.t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			f.t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(map[string]string{"alg": "RS256", "typ": "JWT", "kid": "test"}) + "." + enc(c)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, f.issuerKey, crypto.SHA256, sum[:])
	if err != nil {
		f.t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// verifyToken checks a bearer token as Fulcio would: signature, audience,
// expiry; it returns the claims.
func (f *fakeSigstore) verifyToken(tok string) (claims, string) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, "not a JWT"
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, "bad signature encoding"
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&f.issuerKey.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		return nil, "bad token signature"
	}
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c claims
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, "bad claims"
	}
	if c["aud"] != "sigstore" {
		return nil, "wrong audience"
	}
	if exp, _ := c["exp"].(float64); time.Unix(int64(exp), 0).Before(time.Now()) {
		return nil, "token expired"
	}
	return c, ""
}

func (f *fakeSigstore) serveFulcio(w http.ResponseWriter, r *http.Request) {
	f.fulcioCalls.Add(1)
	f.mu.Lock()
	down, start, lifetime := f.fulcioDown, f.certStart, f.certLifetime
	f.mu.Unlock()
	if down {
		http.Error(w, `{"code":503,"message":"injected outage"}`, http.StatusServiceUnavailable)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/api/v2/signingCert" {
		http.NotFound(w, r)
		return
	}
	c, why := f.verifyToken(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	if why != "" {
		http.Error(w, `{"code":401,"message":"`+why+`"}`, http.StatusUnauthorized)
		return
	}
	var req struct {
		PublicKeyRequest struct {
			PublicKey struct {
				Content string `json:"content"`
			} `json:"publicKey"`
			ProofOfPossession string `json:"proofOfPossession"`
		} `json:"publicKeyRequest"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(req.PublicKeyRequest.PublicKey.Content))
	if err != nil {
		http.Error(w, "bad public key", http.StatusBadRequest)
		return
	}
	pop, _ := base64.StdEncoding.DecodeString(req.PublicKeyRequest.ProofOfPossession)
	sub, _ := c["sub"].(string)
	digest := sha256.Sum256([]byte(sub))
	if ek, ok := pub.(*ecdsa.PublicKey); !ok || !ecdsa.VerifyASN1(ek, digest[:], pop) {
		http.Error(w, "proof of possession failed", http.StatusBadRequest)
		return
	}
	str := func(k string) string { s, _ := c[k].(string); return s }
	gh := "https://github.com/"
	san, _ := url.Parse(gh + str("job_workflow_ref"))
	ext := []struct {
		oid asn1.ObjectIdentifier
		val string
	}{
		{certificate.OIDIssuerV2, str("iss")},
		{certificate.OIDBuildSignerURI, san.String()},
		{certificate.OIDRunnerEnvironment, str("runner_environment")},
		{certificate.OIDSourceRepositoryURI, gh + str("repository")},
		{certificate.OIDSourceRepositoryDigest, str("sha")},
		{certificate.OIDSourceRepositoryRef, str("ref")},
		{certificate.OIDSourceRepositoryOwnerURI, gh + str("repository_owner")},
		{certificate.OIDBuildConfigURI, gh + str("workflow_ref")},
		{certificate.OIDBuildTrigger, str("event_name")},
		{certificate.OIDRunInvocationURI, gh + str("repository") + "/actions/runs/" + str("run_id") + "/attempts/" + str("run_attempt")},
		{certificate.OIDSourceRepositoryVisibilityAtSigning, str("repository_visibility")},
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore:    time.Now().Add(start),
		NotAfter:     time.Now().Add(start + lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		URIs:         []*url.URL{san},
	}
	for _, e := range ext {
		v, err := asn1.MarshalWithParams(e.val, "utf8")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: e.oid, Value: v})
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.fulcioInter, pub, f.fulcioKey)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	chain := []string{
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.fulcioInter.Raw})),
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.caRoot.Raw})),
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"signedCertificateEmbeddedSct": map[string]any{"chain": map[string]any{"certificates": chain}}})
}

func (f *fakeSigstore) serveTSA(w http.ResponseWriter, r *http.Request) {
	f.tsaCalls.Add(1)
	f.mu.Lock()
	down := f.tsaDown
	f.mu.Unlock()
	if down {
		http.Error(w, "injected outage", http.StatusInternalServerError)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/api/v1/timestamp" {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req, err := timestamp.ParseRequest(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ts := timestamp.Timestamp{
		HashAlgorithm: req.HashAlgorithm, HashedMessage: req.HashedMessage, Time: time.Now(),
		Policy: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 2}, Nonce: req.Nonce,
	}
	resp, err := ts.CreateResponseWithOpts(f.tsaLeaf, f.tsaKey, crypto.SHA256)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/timestamp-reply")
	_, _ = io.Copy(w, bytes.NewReader(resp))
}

// caCert makes a CA certificate of tmpl for key, signed by parent's
// signer (self-signed when parent is nil), valid for the test's hours.
func (f *fakeSigstore) caCert(tmpl, parent *x509.Certificate, key, signer *ecdsa.PrivateKey) *x509.Certificate {
	f.t.Helper()
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(5*time.Hour)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		f.t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fakeSigstore) set(fn func(*fakeSigstore)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}
