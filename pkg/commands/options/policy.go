package options

import (
	"github.com/spf13/pflag"

	"github.com/idopipe/idopipe/pkg/sign"
)

// PolicyOptions say whose signature an image must carry before it is
// deployed (deploy, release, rollback) or reported signed (verify-pull):
// public keys (--verify-key), a keyless certificate identity in cosign's
// words (--certificate-identity[-regexp], --certificate-oidc-issuer[-regexp])
// or in gh attestation verify's (--signer-owner, --signer-repo,
// --signer-workflow), or both; any one match accepts the digest.
type PolicyOptions struct {
	KeyPaths []string
	Identity sign.Identity

	// Sigstore is the command's Sigstore group: its --trusted-root is what
	// certificates are checked against.
	Sigstore *SigstoreOptions

	Policy sign.Policy // Validate's result
}

// NewPolicyOptions checks certificates against s's trusted root.
func NewPolicyOptions(s *SigstoreOptions) PolicyOptions { return PolicyOptions{Sigstore: s} }

// AddFlags adds --verify-key and the certificate identity flags.
func (o *PolicyOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&o.KeyPaths, "verify-key", nil,
		"public key (cosign.pub) one of which must have signed the image's digest; checked before anything is written to the cluster (repeatable)")
	fs.StringVar(&o.Identity.Subject, "certificate-identity", "", "keyless: the signing certificate's identity (SAN) must be this, e.g. https://github.com/OWNER/REPO/.github/workflows/release.yml@refs/tags/v1.0.0")
	fs.StringVar(&o.Identity.SubjectRegexp, "certificate-identity-regexp", "", "keyless: the signing certificate's identity (SAN) must match this regular expression")
	fs.StringVar(&o.Identity.Issuer, "certificate-oidc-issuer", "", "keyless: the OIDC issuer named in the certificate (default https://token.actions.githubusercontent.com)")
	fs.StringVar(&o.Identity.IssuerRegexp, "certificate-oidc-issuer-regexp", "", "keyless: the certificate's OIDC issuer must match this regular expression")
	fs.StringVar(&o.Identity.Owner, "signer-owner", "", "keyless, as gh attestation verify --owner: signed by a workflow of a repository of this GitHub owner")
	fs.StringVar(&o.Identity.Repo, "signer-repo", "", "keyless, as gh attestation verify --repo: signed by a workflow of this repository, OWNER/REPO")
	fs.StringVar(&o.Identity.SignerWorkflow, "signer-workflow", "", "keyless, as gh attestation verify --signer-workflow: signed by this workflow, OWNER/REPO/.github/workflows/FILE (a regular expression)")
}

// identitySet says whether any identity flag was given.
func (o *PolicyOptions) identitySet() bool { return o.Identity != (sign.Identity{}) }

// Validate loads the keys, checks the identity and loads the trusted root
// the certificates chain to: all before any build or write.
func (o *PolicyOptions) Validate() error {
	keys, err := sign.LoadKeys(o.KeyPaths)
	if err != nil {
		return err
	}
	o.Policy = sign.Policy{Keys: keys}
	if !o.identitySet() {
		return nil
	}
	if err := o.Identity.Validate(); err != nil {
		return err
	}
	trust, err := o.Sigstore.Trust()
	if err != nil {
		return err
	}
	id := o.Identity
	o.Policy.Identity, o.Policy.Trust = &id, trust
	return nil
}

// Enabled says whether a policy was given.
func (o *PolicyOptions) Enabled() bool { return len(o.KeyPaths) > 0 || o.identitySet() }
