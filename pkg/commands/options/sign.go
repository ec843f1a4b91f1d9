package options

import (
	"github.com/spf13/pflag"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/sign"
)

// SignOptions are --sign, --key and --key-password-file of push and release.
type SignOptions struct {
	Sign         bool
	Key          string
	PasswordFile string

	EnvPassword string // $COSIGN_PASSWORD's value (Complete)
}

// AddFlags adds the signing flags.
func (o *SignOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Sign, "sign", false, "sign the pushed digest (and each platform image, and the provenance) with --key, in cosign's format")
	fs.StringVar(&o.Key, "key", "", "private key that signs: cosign.key (password from $COSIGN_PASSWORD or --key-password-file) or a PEM private key; implies --sign (default ./cosign.key)")
	fs.StringVar(&o.PasswordFile, "key-password-file", "", "file holding the password of --key (default $COSIGN_PASSWORD)")
}

// Complete reads $COSIGN_PASSWORD.
func (o *SignOptions) Complete(getenv Getenv) { o.EnvPassword = getenv.get("COSIGN_PASSWORD") }

// Validate refuses a password file without anything to sign with.
func (o *SignOptions) Validate() error {
	if !o.Enabled() && o.PasswordFile != "" {
		return fail.New(fail.Usage, "pass --sign (and --key) to sign", "--key-password-file without --sign or --key")
	}
	return nil
}

// Enabled says whether pushed images are signed.
func (o *SignOptions) Enabled() bool { return o.Sign || o.Key != "" }

// Signer loads the signing key, or returns nil when signing is off. It
// runs before any build or push: a wrong password costs nothing.
func (o *SignOptions) Signer() (sign.Signer, error) {
	if !o.Enabled() {
		return nil, nil
	}
	path := o.Key
	if path == "" {
		path = "cosign.key"
	}
	return sign.LoadSigner(path, func() ([]byte, error) { return sign.ReadPassword(o.PasswordFile, o.EnvPassword) })
}

// Password is the password for a new key (keys generate).
func (o *SignOptions) Password() ([]byte, error) {
	return sign.ReadPassword(o.PasswordFile, o.EnvPassword)
}
