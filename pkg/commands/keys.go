package commands

import (
	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/sign"
)

func newKeysCommand(env Env, g *options.GlobalOptions) *cobra.Command {
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
			pw, err := sign.ReadPassword(passwordFile, env.Getenv("COSIGN_PASSWORD"))
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
