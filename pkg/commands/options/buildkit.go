package options

import (
	"strings"

	"github.com/spf13/pflag"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/buildkitd/kube"
	"github.com/idopipe/idopipe/pkg/fail"
)

// BuildKitOptions say which daemon builds: --buildkit-host, else
// $BUILDKIT_HOST, else idopipe's own buildkitd (started when needed).
type BuildKitOptions struct {
	Host          string
	TLS           build.TLS
	BuildkitdPath string // idopipe's own daemon's binary

	Path string // $PATH, where idopipe's own daemon and runc are looked for (Complete)
}

// AddFlags adds the daemon's address, its TLS and idopipe's own daemon's binary.
func (o *BuildKitOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Host, "buildkit-host", "", "buildkitd address: unix://, tcp://, kube://NAMESPACE/NAME (a builder of idopipe buildkit create --kubernetes; its builds import and export REGISTRY/OWNER/IMAGE-NAME:buildcache by default, see --cache-to; one made with --platform builds each --platform on that platform's builder and joins them into one index), docker-container://NAME, kube-pod://POD (default $BUILDKIT_HOST, else idopipe's own buildkitd)")
	fs.StringVar(&o.TLS.CACert, "buildkit-tls-ca", "", "CA certificate (PEM) of a tcp:// buildkitd")
	fs.StringVar(&o.TLS.Cert, "buildkit-tls-cert", "", "client certificate (PEM) for a tcp:// buildkitd's mTLS")
	fs.StringVar(&o.TLS.Key, "buildkit-tls-key", "", "client key (PEM) for a tcp:// buildkitd's mTLS")
	fs.StringVar(&o.TLS.ServerName, "buildkit-tls-server-name", "", "server name to verify a tcp:// buildkitd's certificate against (default its host)")
	AddBuildkitdPathFlag(fs, &o.BuildkitdPath)
}

// AddBuildkitdPathFlag adds --buildkitd-path, the binary of idopipe's own
// buildkitd, to p: the build flags and `buildkit start` share it.
func AddBuildkitdPathFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "buildkitd-path", "", "buildkitd binary for idopipe's own daemon (default buildkitd on $PATH)")
}

// Complete takes $BUILDKIT_HOST when no --buildkit-host is given, and $PATH.
func (o *BuildKitOptions) Complete(getenv Getenv) {
	if o.Host == "" {
		o.Host = getenv.get("BUILDKIT_HOST")
	}
	o.Path = getenv.get("PATH")
}

// Validate refuses TLS settings for a daemon that is not reached over TCP,
// and a --buildkitd-path beside a daemon address (idopipe starts no daemon then).
func (o *BuildKitOptions) Validate() error {
	tls := o.TLS != (build.TLS{})
	if tls && !strings.HasPrefix(o.Host, "tcp://") {
		return fail.New(fail.Usage, "give --buildkit-host tcp://HOST:PORT, or drop the --buildkit-tls-* flags",
			"--buildkit-tls-* apply to a tcp:// buildkitd, not %s", describeHost(o.Host))
	}
	if strings.HasPrefix(o.Host, kube.Scheme) {
		if _, _, err := kube.ParseAddress(o.Host); err != nil {
			return err
		}
	}
	if o.BuildkitdPath != "" && o.Host != "" {
		return fail.New(fail.Usage, "drop --buildkitd-path, or unset --buildkit-host and $BUILDKIT_HOST",
			"--buildkitd-path starts idopipe's own buildkitd, but %s names a daemon", o.Host)
	}
	return nil
}

// InCluster says whether the daemon is a builder in a Kubernetes cluster
// (kube://NAMESPACE/NAME).
func (o *BuildKitOptions) InCluster() bool { return strings.HasPrefix(o.Host, kube.Scheme) }

// Managed says whether idopipe's own daemon builds.
func (o *BuildKitOptions) Managed() bool { return o.Host == "" }

func describeHost(h string) string {
	if h == "" {
		return "idopipe's own buildkitd"
	}
	return h
}
