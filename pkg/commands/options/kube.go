package options

import (
	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/names"
)

// KubeOptions are kubectl's connection flags (--kubeconfig, --context, -n
// defaulting to ido, ...), read through cli-runtime as kubectl reads them.
type KubeOptions struct {
	Flags *genericclioptions.ConfigFlags
}

// NewKubeOptions are kubectl's flags without those that would clash with
// the registry's (--username, --password, --token) or invite secrets in argv.
func NewKubeOptions() *KubeOptions {
	f := genericclioptions.NewConfigFlags(true)
	f.Username, f.Password, f.BearerToken = nil, nil, nil
	f.Impersonate, f.ImpersonateUID, f.ImpersonateGroup, f.ImpersonateUserExtra = nil, nil, nil, nil
	f.CacheDir, f.Insecure, f.TLSServerName = nil, nil, nil
	ns := "ido"
	f.Namespace = &ns
	return &KubeOptions{Flags: f}
}

// AddFlags adds kubectl's connection flags.
func (o *KubeOptions) AddFlags(fs *pflag.FlagSet) { o.Flags.AddFlags(fs) }

// Namespace is -n.
func (o *KubeOptions) Namespace() string { return *o.Flags.Namespace }

// Validate refuses an empty or invalid namespace.
func (o *KubeOptions) Validate() error {
	if o.Namespace() == "" {
		return fail.New(fail.Usage, "pass -n NAMESPACE (default ido)", "no namespace")
	}
	return names.Namespace("-n", o.Namespace())
}
