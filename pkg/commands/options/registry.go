package options

import (
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/spf13/pflag"

	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/names"
	"github.com/idopipe/idopipe/pkg/registry"
)

// RegistryOptions say where images go and with which credentials: the
// target (--registry, --owner), the token (--username, --token-file, the
// environment), the TLS trust (--registry-ca) and --jobs.
type RegistryOptions struct {
	Registry  string
	Owner     string
	Username  string
	TokenFile string
	CAFile    string
	Jobs      int

	// Env holds the values of creds.EnvKeys (GITHUB_ACTOR, GITHUB_TOKEN,
	// GHCR_TOKEN), read by Complete.
	Env map[string]string

	hasJobs bool // the command has --jobs
}

// RegistryFlags say which of the registry flags a command has.
type RegistryFlags struct {
	Target bool   // --registry and --owner
	Jobs   bool   // --jobs: the command transfers blobs or many small objects
	Help   string // --registry's help, when not the default one
}

// AddFlags adds the registry flags the command uses.
func (o *RegistryOptions) AddFlags(fs *pflag.FlagSet, with RegistryFlags) {
	if with.Jobs {
		o.hasJobs = true
		fs.IntVar(&o.Jobs, "jobs", 4, "concurrent registry transfers (blobs, signatures)")
	}
	if with.Target {
		help := with.Help
		if help == "" {
			help = "registry host"
		}
		fs.StringVar(&o.Registry, "registry", "ghcr.io", help)
		o.AddOwnerFlag(fs)
	}
	fs.StringVar(&o.Username, "username", "", "registry username (default $GITHUB_ACTOR)")
	fs.StringVar(&o.TokenFile, "token-file", "", "file holding the registry token (default $GITHUB_TOKEN, $GHCR_TOKEN, else ./"+creds.DefaultTokenFile+", else the docker config)")
	fs.StringVar(&o.CAFile, "registry-ca", "", registryCAHelp)
}

// AddOwnerFlag adds --owner alone: build names the owner only for its
// default registry cache (REGISTRY/OWNER/IMAGE-NAME:buildcache).
func (o *RegistryOptions) AddOwnerFlag(fs *pflag.FlagSet) {
	fs.StringVar(&o.Owner, "owner", "", "registry owner (GitHub user or organisation; default $GITHUB_REPOSITORY_OWNER), lowercased")
}

// AddCredentialFlags adds only --registry (with help), --username and
// --token-file: build pulls base images with the push credentials.
func (o *RegistryOptions) AddCredentialFlags(fs *pflag.FlagSet, registryHelp string) {
	fs.StringVar(&o.Registry, "registry", "ghcr.io", registryHelp)
	fs.StringVar(&o.Username, "username", "", "registry username (default $GITHUB_ACTOR)")
	fs.StringVar(&o.TokenFile, "token-file", "", "file holding the registry token (default $GITHUB_TOKEN, $GHCR_TOKEN, else ./"+creds.DefaultTokenFile+", else the docker config)")
}

// Complete reads $GITHUB_REPOSITORY_OWNER for an unset --owner and the
// token's variables.
func (o *RegistryOptions) Complete(getenv Getenv) {
	if o.Owner == "" {
		o.Owner = getenv.get("GITHUB_REPOSITORY_OWNER")
	}
	o.Env = map[string]string{}
	for _, k := range creds.EnvKeys() {
		if v := getenv.get(k); v != "" {
			o.Env[k] = v
		}
	}
}

// Validate refuses --jobs below 1, an --owner that cannot own a package
// on the registry (GitHub's rule on ghcr.io), and a --registry-ca that cannot be read
// or holds no certificate, before anything runs: a command that would not
// reach the registry (a deploy by digest) still refuses a wrong CA file.
func (o *RegistryOptions) Validate() error {
	if o.Jobs < 0 || o.hasJobs && o.Jobs < 1 {
		return fail.New(fail.Usage, "pass --jobs 1 or more", "--jobs %d: at least one transfer must run", o.Jobs)
	}
	if err := names.Owner("--owner", o.Registry, o.Owner); err != nil {
		return err
	}
	return ValidateCA(o.CAFile)
}

// AddCAFlag adds only --registry-ca, for a command that reads a registry
// it does not push to (doctor).
func (o *RegistryOptions) AddCAFlag(fs *pflag.FlagSet) {
	fs.StringVar(&o.CAFile, "registry-ca", "", registryCAHelp)
}

const registryCAHelp = "PEM file with extra CA certificates for the registry"

// ValidateCA checks a --registry-ca file as the registry client will read it.
func ValidateCA(file string) error {
	if file == "" {
		return nil
	}
	_, err := registry.Access{CAFile: file}.Transport()
	return err
}

// Credentials resolves the token for registryHost ("" when unknown, which
// skips the docker config); warn is told about a token file others can read.
func (o *RegistryOptions) Credentials(registryHost string, warn func(string)) (creds.Credentials, error) {
	return creds.Resolve(creds.Options{
		Username: o.Username, TokenFile: o.TokenFile, Env: o.Env, Warn: warn,
		Registry: registryHost, Keychain: authn.DefaultKeychain,
	})
}

// OptionalCredentials are Credentials, or none when no token is configured
// at all (anonymous pulls of public images).
func (o *RegistryOptions) OptionalCredentials(registryHost string, warn func(string)) (*creds.Credentials, error) {
	c, err := o.Credentials(registryHost, warn)
	if err != nil {
		if o.TokenFile == "" && o.Username == "" {
			return nil, nil //nolint:nilerr // no usable credentials: pull anonymously
		}
		return nil, err
	}
	return &c, nil
}

// Access is how to reach the registry with c (nil: anonymously).
func (o *RegistryOptions) Access(c *creds.Credentials) registry.Access {
	return registry.Access{Creds: c, CAFile: o.CAFile, Jobs: o.Jobs}
}
