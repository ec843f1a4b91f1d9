package commands

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/sign"
)

func newKeysCommand(env Env, g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Make the key pair that signs pushed images (cosign-compatible)",
		Args:  usageArgs(cobra.NoArgs),
	}
	var dir, passwordFile string
	var force bool
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Write cosign.key (encrypted) and cosign.pub",
		Long: `generate writes an ECDSA P-256 key pair as cosign does: cosign.key, encrypted
with a password (mode 600), and cosign.pub. The password comes from
$COSIGN_PASSWORD or --password-file, never from the command line. Sign with
` + "`idopipe push --sign --key cosign.key`" + ` (or cosign sign --key cosign.key); verify
with --verify-key cosign.pub (or cosign verify --key cosign.pub).`,
		Example: `  COSIGN_PASSWORD=… idopipe keys generate
  idopipe keys generate --password-file ~/.idopipe-key-password --output-dir ~/.idopipe`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			pw, err := sign.ReadPassword(passwordFile, env.Getenv)
			if err != nil {
				return err
			}
			priv, pub, err := sign.Generate(dir, pw, force)
			if err != nil {
				return err
			}
			return finish(env, g, nil, "wrote "+priv+" (private, encrypted) and "+pub+" (public)",
				map[string]string{"privateKey": priv, "publicKey": pub}, nil)
		},
	}
	gen.Flags().StringVar(&dir, "output-dir", ".", "directory for cosign.key and cosign.pub")
	gen.Flags().StringVar(&passwordFile, "password-file", "", "file holding the password that encrypts cosign.key (default $COSIGN_PASSWORD)")
	gen.Flags().BoolVar(&force, "force", false, "replace an existing cosign.key and cosign.pub")
	cmd.AddCommand(gen)
	return cmd
}

// signOptions are --sign, --key and --key-password-file of push and release.
type signOptions struct {
	Sign         bool
	Key          string
	PasswordFile string
}

func (o *signOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Sign, "sign", false, "sign the pushed digest (and each platform image, and the provenance) with --key, in cosign's format")
	fs.StringVar(&o.Key, "key", "", "private key that signs: cosign.key (password from $COSIGN_PASSWORD or --key-password-file) or a PEM private key; implies --sign (default ./cosign.key)")
	fs.StringVar(&o.PasswordFile, "key-password-file", "", "file holding the password of --key (default $COSIGN_PASSWORD)")
}

// signer loads the signing key, or returns nil when signing is off. It
// runs before any build or push: a wrong password costs nothing.
func (o *signOptions) signer(env Env) (sign.Signer, error) {
	if !o.Sign && o.Key == "" {
		if o.PasswordFile != "" {
			return nil, fail.New(fail.Usage, "pass --sign (and --key) to sign", "--key-password-file without --sign or --key")
		}
		return nil, nil
	}
	path := o.Key
	if path == "" {
		path = "cosign.key"
	}
	return sign.LoadSigner(path, func() ([]byte, error) { return sign.ReadPassword(o.PasswordFile, env.Getenv) })
}

// verifyKeyOptions are --verify-key of deploy and release.
type verifyKeyOptions struct{ Keys []string }

func (o *verifyKeyOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&o.Keys, "verify-key", nil,
		"public key (cosign.pub) one of which must have signed the image's digest; checked before anything is written to the cluster (repeatable)")
}

func (o *verifyKeyOptions) keys() ([]sign.Key, error) { return sign.LoadKeys(o.Keys) }
