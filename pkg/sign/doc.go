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
// No network service is involved: no Fulcio, no Rekor. The Signer
// interface is where a keyless signer (a Fulcio certificate for an OIDC
// token) would plug in; it is not implemented.
package sign
