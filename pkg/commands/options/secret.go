package options

import (
	"github.com/spf13/pflag"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/names"
)

// PullSecretOptions are --secret-name: the image-pull Secret a release
// writes, verify-pull --as-cluster reads and doctor checks. One flag, one
// meaning, one check for every command that has it.
type PullSecretOptions struct {
	SecretName string
}

// AddFlags adds --secret-name.
func (o *PullSecretOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.SecretName, "secret-name", "ghcr-secret", "name of the image-pull Secret (kubernetes.io/dockerconfigjson) in the namespace")
}

// Validate refuses an empty name and one the API server would refuse.
func (o *PullSecretOptions) Validate() error {
	if o.SecretName == "" {
		return fail.New(fail.Usage, "pass --secret-name NAME (default ghcr-secret)", "no pull Secret name")
	}
	return names.SecretName("--secret-name", o.SecretName)
}
