package sign_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	sgsign "github.com/sigstore/sigstore-go/pkg/sign"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
	"github.com/idopipe/idopipe/pkg/sign"
)

// memRegistry is go-containerregistry's in-memory registry on loopback
// (plain HTTP, which go-containerregistry uses for 127.0.0.1), with or
// without the OCI 1.1 referrers API; it counts manifest PUTs.
type memRegistry struct {
	host string
	puts atomic.Int32
}

func newMemRegistry(t *testing.T, referrersAPI bool) *memRegistry {
	t.Helper()
	m := &memRegistry{}
	h := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)), ggcrregistry.WithReferrersSupport(referrersAPI))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			m.puts.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	m.host = strings.TrimPrefix(s.URL, "http://")
	return m
}

func (m *memRegistry) ref(t *testing.T, repoTag string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(m.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

// slsaV1 is BuildKit's SLSA v1 provenance statement for a platform image.
func slsaV1(subject v1.Hash) []byte {
	b, _ := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v0.1",
		"predicateType": "https://slsa.dev/provenance/v1",
		"subject":       []any{map[string]any{"name": "pkg:docker/planner@0.4.0", "digest": map[string]string{"sha256": subject.Hex}}},
		"predicate": map[string]any{
			"buildDefinition": map[string]any{"buildType": "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md",
				"externalParameters": map[string]any{"request": map[string]any{"args": map[string]string{
					"label:org.opencontainers.image.source":   "https://github.com/o/r",
					"label:org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
				}}}},
			"runDetails": map[string]any{"builder": map[string]any{"id": ""}},
		},
	})
	return b
}

// pushIndexTo pushes a two-platform index with BuildKit-style SLSA v1
// provenance attestation manifests; it returns the index digest and the
// platform images'.
func pushIndexTo(t *testing.T, m *memRegistry, repoTag string) (name.Digest, []v1.Hash) {
	t.Helper()
	idx, children := provenanceIndex(t, slsaV1, "https://slsa.dev/provenance/v1")
	ref := m.ref(t, repoTag)
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	h, _ := idx.Digest()
	return ref.Context().Digest(h.String()), children
}

func pushImageTo(t *testing.T, m *memRegistry, repoTag string) name.Digest {
	t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	ref := m.ref(t, repoTag)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	h, _ := img.Digest()
	return ref.Context().Digest(h.String())
}

// instance is the fake's Sigstore instance: Fulcio and the timestamp
// authority (GitHub's shape: no log).
func (f *fakeSigstore) instance() sign.Instance {
	return sign.Instance{Name: "custom", FulcioURL: f.fulcio.URL, TSAURL: f.tsa.URL, TrustedRoot: f.trustedRoot}
}

func (f *fakeSigstore) signer(t *testing.T, tokens sign.TokenSource) *sign.KeylessSigner {
	t.Helper()
	s, err := sign.NewKeylessSigner(context.Background(), f.instance(), tokens, registry.Access{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fakeSigstore) policy(t *testing.T, id sign.Identity) sign.Policy {
	t.Helper()
	tr, err := sign.LoadTrustedRoot(f.trustedRoot)
	if err != nil {
		t.Fatal(err)
	}
	return sign.Policy{Identity: &id, Trust: tr}
}

const releaseSAN = "https://github.com/o/r/.github/workflows/release.yml@refs/tags/v1"

// TestKeylessSignVerify: keyless signing of an index writes bundle
// referrers (the signature of each manifest, and the provenance with the
// pushed digest among its subjects) without touching the index, through
// the referrers API and through its tag fallback; each digest verifies by
// identity (gh's owner, repository and workflow, cosign's exact SAN),
// with the certificate's claims and the timestamp that proves the time;
// another workflow, owner or issuer is refused in one line naming image,
// digest, what the certificate says and what was required; a rerun writes
// nothing.
func TestKeylessSignVerify(t *testing.T) {
	t.Parallel()
	for _, api := range []bool{true, false} {
		mode := map[bool]string{true: "referrers API", false: "tag fallback"}[api]
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			reg := newMemRegistry(t, api)
			f := newFakeSigstore(t)
			ref, children := pushIndexTo(t, reg, "o/planner:0.4.0")
			before, _ := remote.Index(ref)
			beforeM, _ := before.IndexManifest()

			tok := f.token(githubClaims("o/r", "release.yml", "refs/tags/v1"))
			s := f.signer(t, sign.TokenValue("SIGSTORE_ID_TOKEN", tok))
			res, err := s.Sign(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Digests) != 3 || res.Digests[0] != ref.DigestStr() || res.Attestations != 2 || len(res.Bundles) != 5 || res.Already != 0 || res.Identity != releaseSAN {
				t.Fatalf("signed %+v", res)
			}
			if got := res.String(); !strings.Contains(got, "signed 3 manifest(s) with a certificate for "+releaseSAN) {
				t.Errorf("summary %q", got)
			}
			if f.fulcioCalls.Load() != 1 {
				t.Errorf("%d certificate requests for one run, want 1", f.fulcioCalls.Load())
			}
			after, _ := remote.Index(ref)
			afterM, _ := after.IndexManifest()
			if len(afterM.Manifests) != len(beforeM.Manifests) {
				t.Fatalf("signing changed the index: %d entries, was %d", len(afterM.Manifests), len(beforeM.Manifests))
			}
			checkStored(t, ref, api)

			// By gh's owner (the default issuer is GitHub's).
			p := f.policy(t, sign.Identity{Owner: "o"})
			v, err := sign.Verify(ctx, ref, p, registry.Access{}, sign.WithProvenance())
			if err != nil {
				t.Fatal(err)
			}
			c := v.Certificate
			if c == nil || c.Subject != releaseSAN || c.Issuer != githubIssuer || c.Repository != "https://github.com/o/r" ||
				c.Ref != "refs/tags/v1" || c.Commit != "0123456789abcdef0123456789abcdef01234567" || c.Trigger != "push" ||
				c.RunURL != "https://github.com/o/r/actions/runs/42/attempts/1" || c.RunnerEnvironment != "github-hosted" {
				t.Fatalf("certificate %+v", c)
			}
			if v.Key != "" || v.Bundle == "" || v.Timestamp == nil || !strings.HasPrefix(v.TimestampBy, "timestamp authority") ||
				time.Since(*v.Timestamp) > time.Minute {
				t.Errorf("verified %+v", v)
			}
			if got, want := v.Signer(), releaseSAN+" (issuer "+githubIssuer+")"; got != want {
				t.Errorf("Signer() = %q, want %q", got, want)
			}
			if len(v.Provenance) != 2 || !v.Provenance[0].Signed || v.Provenance[0].Source != "https://github.com/o/r" {
				t.Errorf("provenance %+v", v.Provenance)
			}
			for _, h := range children {
				if _, err := sign.Verify(ctx, ref.Context().Digest(h.String()), p, registry.Access{}); err != nil {
					t.Errorf("platform image %s: %v", h, err)
				}
			}
			for _, id := range []sign.Identity{
				{Subject: releaseSAN, Issuer: githubIssuer},
				{SubjectRegexp: `^https://github\.com/o/r/`, IssuerRegexp: `^https://token\.actions\.`},
				{Repo: "o/r", SignerWorkflow: "o/r/.github/workflows/release.yml"},
				{Owner: "O"}, // GitHub's names fold case, as gh compares them
			} {
				if _, err := sign.Verify(ctx, ref, f.policy(t, id), registry.Access{}); err != nil {
					t.Errorf("%+v: %v", id, err)
				}
			}

			// Refusals: one line, image, digest, what the certificate says,
			// what was required.
			for what, id := range map[string]sign.Identity{
				"another workflow": {SignerWorkflow: "o/r/.github/workflows/other.yml"},
				"another owner":    {Owner: "someone"},
				"another repo":     {Repo: "o/other"},
				"another issuer":   {Owner: "o", Issuer: "https://accounts.google.com"},
			} {
				_, err := sign.Verify(ctx, ref, f.policy(t, id), registry.Access{})
				wantClass(t, err, fail.Unsigned, ref.Context().String(), ref.DigestStr(), releaseSAN, "another identity", "required: "+id.String())
				if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "--") {
					t.Errorf("%s: not one line, or names a flag: %q", what, err)
				}
			}
			// A key does not accept a certificate.
			_, k, _ := keyPair(t)
			_, err = sign.Verify(ctx, ref, sign.Policy{Keys: []sign.Key{k}}, registry.Access{})
			wantClass(t, err, fail.Unsigned, "no certificate identity is accepted", k.ID)

			// A rerun: everything is there and verifies under the signer's
			// own identity, so nothing is asked for and nothing written.
			puts, calls := reg.puts.Load(), f.fulcioCalls.Load()
			res, err = s.Sign(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if res.Already != 5 || len(res.Bundles) != 0 || reg.puts.Load() != puts || f.fulcioCalls.Load() != calls {
				t.Errorf("rerun: %+v, %d manifest PUTs, %d certificate requests", res, reg.puts.Load()-puts, f.fulcioCalls.Load()-calls)
			}
			// Another workflow's signer does not count the first one's
			// signatures as its own.
			other := f.signer(t, sign.TokenValue("T", f.token(githubClaims("o/r", "nightly.yml", "refs/heads/main"))))
			if res, err = other.Sign(ctx, ref); err != nil || res.Already != 0 || len(res.Bundles) != 5 {
				t.Errorf("another identity's run: %+v %v", res, err)
			}
		})
	}
}

// checkStored reads back what keyless signing stored for ref: referrers
// shaped as actions/attest and cosign v3 write them, found by gh's way
// (remote.Referrers); with the tag fallback, the sha256-<hex> index.
func checkStored(t *testing.T, ref name.Digest, api bool) {
	t.Helper()
	idx, err := remote.Referrers(ref)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := idx.IndexManifest()
	if len(m.Manifests) != 3 { // the index's signature and 2 provenance
		t.Fatalf("%d referrers of the index, want 3: %+v", len(m.Manifests), m.Manifests)
	}
	preds := map[string]int{}
	for _, d := range m.Manifests {
		// go-containerregistry's registry reports the config's media type
		// through its referrers API instead of the manifest's artifactType
		// (the OCI spec's); its tag fallback index has the right one.
		if d.ArtifactType != sign.BundleMediaType && (!api || d.ArtifactType != "application/vnd.oci.empty.v1+json") {
			t.Errorf("referrer artifactType %q", d.ArtifactType)
		}
		img, err := remote.Image(ref.Context().Digest(d.Digest.String()))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := img.RawManifest()
		var mf v1.Manifest
		_ = json.Unmarshal(raw, &mf)
		if mf.ArtifactType != sign.BundleMediaType || mf.Config.MediaType != "application/vnd.oci.empty.v1+json" || mf.Config.Size != 2 ||
			len(mf.Layers) != 1 || mf.Layers[0].MediaType != sign.BundleMediaType || mf.Subject == nil || mf.Subject.Digest.String() != ref.DigestStr() ||
			mf.Annotations[sign.AnnotationBundleContent] != "dsse-envelope" {
			t.Errorf("referrer manifest %s", raw)
		}
		preds[mf.Annotations[sign.AnnotationBundlePredicateType]]++
	}
	if preds[sign.CosignSignPredicateType] != 1 || preds["https://slsa.dev/provenance/v1"] != 2 {
		t.Errorf("predicate types %v", preds)
	}
	h, _ := v1.NewHash(ref.DigestStr())
	_, err = remote.Index(ref.Context().Tag(h.Algorithm + "-" + h.Hex))
	if api && err == nil {
		t.Error("a referrers tag was written although the registry serves the referrers API")
	}
	if !api && err != nil {
		t.Errorf("no referrers tag on a registry without the referrers API: %v", err)
	}
}

// putBundle stores bundle as a referrer of subject the way cosign v3 and
// actions/attest do, for bundles the tests make or alter.
func putBundle(t *testing.T, subject name.Digest, bundle []byte) {
	t.Helper()
	desc, err := remote.Head(subject)
	if err != nil {
		t.Fatal(err)
	}
	cfg := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	layer := static.NewLayer(bundle, sign.BundleMediaType)
	var descs []v1.Descriptor
	for _, l := range []v1.Layer{cfg, layer} {
		if err := remote.WriteLayer(subject.Context(), l); err != nil {
			t.Fatal(err)
		}
		d, _ := l.Digest()
		sz, _ := l.Size()
		mt, _ := l.MediaType()
		descs = append(descs, v1.Descriptor{MediaType: mt, Digest: d, Size: sz})
	}
	mf := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: sign.BundleMediaType,
		Config: descs[0], Layers: descs[1:], Subject: &v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size},
		Annotations: map[string]string{sign.AnnotationBundleContent: "dsse-envelope", sign.AnnotationBundlePredicateType: sign.CosignSignPredicateType}}
	raw, _ := json.Marshal(mf)
	h, _, _ := v1.SHA256(strings.NewReader(string(raw)))
	if err := remote.Put(subject.Context().Digest(h.String()), rawManifest(raw)); err != nil {
		t.Fatal(err)
	}
}

type rawManifest []byte

func (r rawManifest) RawManifest() ([]byte, error)        { return r, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// bundleOf reads the one bundle stored for d.
func bundleOf(t *testing.T, d name.Digest) []byte {
	t.Helper()
	idx, err := remote.Referrers(d)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := idx.IndexManifest()
	if len(m.Manifests) != 1 {
		t.Fatalf("%d referrers of %s, want 1", len(m.Manifests), d)
	}
	img, err := remote.Image(d.Context().Digest(m.Manifests[0].Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	rc, err := ls[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKeylessRefusals: an unsigned image, a bundle copied from another
// digest, a tampered bundle and a certificate that expired with no
// timestamp are refused (class Unsigned), each saying why; a keyed bundle
// (as cosign v3 --key writes) verifies by key.
func TestKeylessRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := newMemRegistry(t, false)
	f := newFakeSigstore(t)
	p := f.policy(t, sign.Identity{Owner: "o"})
	s := f.signer(t, sign.TokenValue("T", f.token(githubClaims("o/r", "release.yml", "refs/tags/v1"))))

	unsigned := pushImageTo(t, reg, "o/app:unsigned")
	_, err := sign.Verify(ctx, unsigned, p, registry.Access{})
	wantClass(t, err, fail.Unsigned, "not signed", unsigned.Context().String(), unsigned.DigestStr(), "required: "+p.String())

	a := pushImageTo(t, reg, "o/app:a")
	if _, err := s.Sign(ctx, a); err != nil {
		t.Fatal(err)
	}
	signedA := bundleOf(t, a)

	// a's bundle stored as b's: its statement is about a.
	b := pushImageTo(t, reg, "o/app:b")
	putBundle(t, b, signedA)
	_, err = sign.Verify(ctx, b, p, registry.Access{})
	wantClass(t, err, fail.Unsigned, b.DigestStr(), releaseSAN, "not about this digest")

	// Tampered: the statement changed (another predicate), the signature
	// kept; and a signature with a flipped bit. Each alone on a copy of
	// the image in a repository of its own; beside the good bundle, the
	// good one still verifies.
	c := pushImageTo(t, reg, "o/app:c")
	if _, err := s.Sign(ctx, c); err != nil {
		t.Fatal(err)
	}
	good := bundleOf(t, c)
	tamper := func(edit func(env map[string]any)) []byte {
		var bj map[string]any
		if err := json.Unmarshal(good, &bj); err != nil {
			t.Fatal(err)
		}
		edit(bj["dsseEnvelope"].(map[string]any))
		out, _ := json.Marshal(bj)
		return out
	}
	otherPredicate := tamper(func(env map[string]any) {
		payload, _ := base64.StdEncoding.DecodeString(env["payload"].(string))
		env["payload"] = base64.StdEncoding.EncodeToString([]byte(strings.Replace(string(payload), sign.CosignSignPredicateType, "https://example.com/evil/v1", 1)))
	})
	flipped := tamper(func(env map[string]any) {
		sig0 := env["signatures"].([]any)[0].(map[string]any)
		raw, _ := base64.StdEncoding.DecodeString(sig0["sig"].(string))
		raw[len(raw)/2] ^= 0xff
		sig0["sig"] = base64.StdEncoding.EncodeToString(raw)
	})
	for i, bad := range [][]byte{otherPredicate, flipped} {
		alone := copyImage(t, c, reg.ref(t, fmt.Sprintf("o/tampered%d:c", i)))
		putBundle(t, alone, bad)
		_, err = sign.Verify(ctx, alone, p, registry.Access{})
		wantClass(t, err, fail.Unsigned, alone.DigestStr(), releaseSAN, "none valid", []string{"signature does not verify", "timestamp"}[i])
	}
	putBundle(t, c, otherPredicate)
	if _, err := sign.Verify(ctx, c, p, registry.Access{}); err != nil {
		t.Fatalf("a good bundle beside a tampered one: %v", err)
	}

	// Expired certificate, no timestamp: signed with sigstore-go by a
	// certificate Fulcio issued 20 minutes ago for 10 minutes, no
	// timestamp authority, no log.
	f.set(func(f *fakeSigstore) { f.certStart = -20 * time.Minute })
	expired := pushImageTo(t, reg, "o/app:expired")
	kp, err := sgsign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := v1.NewHash(expired.DigestStr())
	st, _ := json.Marshal(map[string]any{"_type": "https://in-toto.io/Statement/v1", "predicateType": sign.CosignSignPredicateType, "predicate": map[string]any{},
		"subject": []any{map[string]any{"digest": map[string]string{"sha256": h.Hex}}}})
	pb, err := sgsign.Bundle(&sgsign.DSSEData{Data: st, PayloadType: "application/vnd.in-toto+json"}, kp, sgsign.BundleOptions{
		CertificateProvider:        sgsign.NewFulcio(&sgsign.FulcioOptions{BaseURL: f.fulcio.URL}),
		CertificateProviderOptions: &sgsign.CertificateProviderOptions{IDToken: f.token(githubClaims("o/r", "release.yml", "refs/tags/v1"))},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.set(func(f *fakeSigstore) { f.certStart = 0 })
	eb, _ := protojson.Marshal(pb)
	putBundle(t, expired, eb)
	_, err = sign.Verify(ctx, expired, p, registry.Access{})
	wantClass(t, err, fail.Unsigned, expired.DigestStr(), releaseSAN, "no timestamp or log entry proves it was signed while its certificate was valid")

	// A keyed bundle (cosign v3 sign --key): verified by its key, refused
	// by another.
	keyed := pushImageTo(t, reg, "o/app:keyed")
	kh, _ := v1.NewHash(keyed.DigestStr())
	st, _ = json.Marshal(map[string]any{"_type": "https://in-toto.io/Statement/v1", "predicateType": sign.CosignSignPredicateType, "predicate": map[string]any{},
		"subject": []any{map[string]any{"digest": map[string]string{"sha256": kh.Hex}}}})
	pb, err = sgsign.Bundle(&sgsign.DSSEData{Data: st, PayloadType: "application/vnd.in-toto+json"}, kp, sgsign.BundleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := protojson.Marshal(pb)
	putBundle(t, keyed, kb)
	k, err := sign.NewKey("cosign.pub", kp.GetPublicKey())
	if err != nil {
		t.Fatal(err)
	}
	v, err := sign.Verify(ctx, keyed, sign.Policy{Keys: []sign.Key{k}}, registry.Access{})
	if err != nil || v.Key != k.String() || v.Bundle == "" || v.Signer() != "key "+k.String() {
		t.Fatalf("keyed bundle: %+v %v", v, err)
	}
	_, other, _ := keyPair(t)
	_, err = sign.Verify(ctx, keyed, sign.Policy{Keys: []sign.Key{other}}, registry.Access{})
	wantClass(t, err, fail.Unsigned, "no key given verifies it", other.ID)
	// Keys and an identity together: either will do.
	both := f.policy(t, sign.Identity{Owner: "o"})
	both.Keys = []sign.Key{k}
	for _, d := range []name.Digest{keyed, a} {
		if _, err := sign.Verify(ctx, d, both, registry.Access{}); err != nil {
			t.Errorf("%s with keys or identity: %v", d, err)
		}
	}

	// An identity without a trusted root is a usage error.
	_, err = sign.Verify(ctx, a, sign.Policy{Identity: &sign.Identity{Owner: "o"}}, registry.Access{})
	wantClass(t, err, fail.Usage, "trusted root")
}

func copyImage(t *testing.T, from name.Digest, to name.Tag) name.Digest {
	t.Helper()
	img, err := remote.Image(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(to, img); err != nil {
		t.Fatal(err)
	}
	return to.Context().Digest(from.DigestStr())
}
