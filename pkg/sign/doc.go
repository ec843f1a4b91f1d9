// Package sign signs pushed images and verifies their signatures offline,
// in the formats cosign reads and writes, with keys the user holds.
//
// Keys: Generate writes a cosign-compatible key pair (cosign.key, an
// ECDSA P-256 private key encrypted with a password as cosign encrypts it,
// and cosign.pub); LoadSigner also takes an unencrypted PEM private key
// (PKCS#8, EC or RSA). The password never comes from argv: the caller
// passes it in (idopipe reads $COSIGN_PASSWORD or a file).
//
// Storage: a signature is a layer of the manifest tagged
// sha256-<hex>.sig in the image's repository, its content cosign's simple
// signing payload (github.com/sigstore/sigstore/pkg/signature/payload) and
// its annotation dev.cosignproject.cosign/signature the base64 signature;
// an attestation (BuildKit's SLSA provenance, signed as it is) is a DSSE
// envelope in the manifest tagged sha256-<hex>.att of the image it is about
// (its subject, a platform image of the index). That is where cosign looks on
// registries without the OCI referrers API (GHCR, distribution), and it
// never touches the image index, so no unknown/unknown entry appears.
// Verify also reads signatures that cosign stored as OCI 1.1 referrers
// (--registry-referrers-mode=oci-1-1), through the referrers API where a
// registry serves it and its tag fallback where not.
//
// Keyless (KeylessSigner): sigstore-go gets a short-lived Fulcio
// certificate for an OIDC token (TokenSource: GitHub Actions' runner, a
// file, a variable; CheckToken reads it offline first), signs an in-toto
// statement in a DSSE envelope, timestamps it (timestamp authority) and/or
// logs it (Rekor v1 or v2), and checks the bundle against the instance's
// trusted root. Each bundle (v0.3) is stored as an OCI 1.1 referrer of
// the digest (bundlestore.go), as cosign v3 and actions/attest store
// them: the signature of each manifest (cosign's sign predicate) and
// BuildKit's SLSA provenance with the pushed digest among its subjects.
//
// Verify takes one Policy (keys, a certificate Identity with its trusted
// root, or both) and reads every format above; sigstore-go does every
// certificate, envelope, timestamp and log check.
package sign
