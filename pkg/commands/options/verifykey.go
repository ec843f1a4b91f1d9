package options

import (
	"github.com/spf13/pflag"

	"github.com/idopipe/idopipe/pkg/sign"
)

// VerifyKeyOptions are --verify-key of deploy, diff and release: public
// keys one of which must have signed each digest before the first cluster write.
type VerifyKeyOptions struct {
	Paths []string

	Keys []sign.Key // Paths loaded (Validate)
}

// AddFlags adds --verify-key.
func (o *VerifyKeyOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&o.Paths, "verify-key", nil,
		"public key (cosign.pub) one of which must have signed the image's digest; checked before anything is written to the cluster (repeatable)")
}

// Validate loads the keys: a missing or malformed key fails before any work.
func (o *VerifyKeyOptions) Validate() error {
	keys, err := sign.LoadKeys(o.Paths)
	o.Keys = keys
	return err
}
