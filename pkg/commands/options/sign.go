package options

import (
	"context"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/pflag"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
	"github.com/idopipe/idopipe/pkg/sign"
)

// SignOptions are push's and release's signing flags: --sign alone signs
// keyless (a Fulcio certificate for the job's OIDC token, from the
// --sigstore instance); --key signs with a key pair, as before.
type SignOptions struct {
	Sign          bool
	Key           string
	PasswordFile  string
	IdentityToken string

	// Sigstore is the command's Sigstore group (keyless).
	Sigstore *SigstoreOptions

	EnvPassword     string // $COSIGN_PASSWORD (Complete)
	envToken        string // $SIGSTORE_ID_TOKEN
	actionsURL      string // $ACTIONS_ID_TOKEN_REQUEST_URL
	actionsToken    string // $ACTIONS_ID_TOKEN_REQUEST_TOKEN
	inGitHubActions bool   // $GITHUB_ACTIONS == true
}

// NewSignOptions signs keyless with s's instance.
func NewSignOptions(s *SigstoreOptions) SignOptions { return SignOptions{Sigstore: s} }

// ImageSigner signs a pushed digest (and what belongs to it).
type ImageSigner interface {
	Sign(ctx context.Context, ref name.Digest) (sign.Result, error)
}

// AddFlags adds the signing flags.
func (o *SignOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Sign, "sign", false, "sign the pushed digest (and each platform image, and the provenance): keyless with the job's OIDC identity, or with --key")
	fs.StringVar(&o.Key, "key", "", "private key that signs, in cosign's format: cosign.key (password from $COSIGN_PASSWORD or --key-password-file) or a PEM private key; implies --sign")
	fs.StringVar(&o.PasswordFile, "key-password-file", "", "file holding the password of --key (default $COSIGN_PASSWORD)")
	fs.StringVar(&o.IdentityToken, "identity-token", "", "keyless: file holding the OIDC token Fulcio certifies (default $SIGSTORE_ID_TOKEN, else GitHub Actions' token for the job)")
}

// Complete reads $COSIGN_PASSWORD and where an OIDC token can come from.
func (o *SignOptions) Complete(getenv Getenv) {
	o.EnvPassword = getenv.get("COSIGN_PASSWORD")
	o.envToken = getenv.get("SIGSTORE_ID_TOKEN")
	o.actionsURL = getenv.get("ACTIONS_ID_TOKEN_REQUEST_URL")
	o.actionsToken = getenv.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
	o.inGitHubActions = getenv.get("GITHUB_ACTIONS") == "true"
}

// Validate refuses flags that would have no effect, and a keyless
// instance it cannot sign with.
func (o *SignOptions) Validate() error {
	if !o.Enabled() && o.PasswordFile != "" {
		return fail.New(fail.Usage, "pass --sign --key KEY to sign with a key", "--key-password-file without --key")
	}
	if !o.Enabled() && o.IdentityToken != "" {
		return fail.New(fail.Usage, "pass --sign to sign keyless", "--identity-token without --sign")
	}
	if o.Key != "" && o.IdentityToken != "" {
		return fail.New(fail.Usage, "drop --key to sign keyless, or --identity-token to sign with the key", "--identity-token and --key both name what signs")
	}
	if o.Keyless() {
		if o.PasswordFile != "" {
			return fail.New(fail.Usage, "drop --key-password-file, or pass --key", "--key-password-file with keyless signing (--sign without --key)")
		}
		if _, err := o.Sigstore.Instance(); err != nil {
			return err
		}
	}
	return nil
}

// Enabled says whether pushed images are signed.
func (o *SignOptions) Enabled() bool { return o.Sign || o.Key != "" }

// Keyless says whether they are signed without a key.
func (o *SignOptions) Keyless() bool { return o.Enabled() && o.Key == "" }

// tokens is where keyless signing's OIDC token comes from.
func (o *SignOptions) tokens() (sign.TokenSource, error) {
	switch {
	case o.IdentityToken != "":
		return sign.TokenFile(o.IdentityToken), nil
	case o.envToken != "":
		return sign.TokenValue("SIGSTORE_ID_TOKEN", o.envToken), nil
	case o.actionsURL != "" && o.actionsToken != "":
		hc, err := o.Sigstore.HTTPClient()
		if err != nil {
			return nil, err
		}
		return sign.GitHubActionsToken(o.actionsURL, o.actionsToken, hc), nil
	case o.inGitHubActions:
		return nil, fail.New(fail.Credentials, "add `permissions: id-token: write` to the job (or pass --sign --key KEY)",
			"no OIDC token for keyless signing: the runner hands out none ($ACTIONS_ID_TOKEN_REQUEST_URL is not set)")
	default:
		return nil, fail.New(fail.Credentials, "pass --identity-token FILE or set $SIGSTORE_ID_TOKEN (in GitHub Actions, add `permissions: id-token: write`), or sign with --key",
			"no OIDC token for keyless signing")
	}
}

// ImageSigner loads the key, or for keyless signing fetches and checks an
// OIDC token (expiry, audience) and the instance's trusted root: before
// any build or push, so a job without id-token permission costs nothing.
// nil when signing is off.
func (o *SignOptions) ImageSigner(ctx context.Context, access registry.Access) (ImageSigner, error) {
	if !o.Enabled() {
		return nil, nil
	}
	if !o.Keyless() {
		s, err := sign.LoadSigner(o.Key, func() ([]byte, error) { return sign.ReadPassword(o.PasswordFile, o.EnvPassword) })
		if err != nil {
			return nil, err
		}
		return sign.NewImageSigner(s, access), nil
	}
	inst, err := o.Sigstore.Instance()
	if err != nil {
		return nil, err
	}
	ts, err := o.tokens()
	if err != nil {
		return nil, err
	}
	if _, err := sign.CheckToken(ctx, ts, time.Now()); err != nil {
		return nil, err
	}
	hc, err := o.Sigstore.HTTPClient()
	if err != nil {
		return nil, err
	}
	opts := []sign.KeylessOption{sign.WithHTTPClient(hc)}
	if o.Sigstore.CAFile != "" {
		opts = append(opts, sign.WithCA(o.Sigstore.CAFile))
	}
	return sign.NewKeylessSigner(ctx, inst, ts, access, opts...)
}

// Password is the password for a new key (keys generate).
func (o *SignOptions) Password() ([]byte, error) {
	return sign.ReadPassword(o.PasswordFile, o.EnvPassword)
}
