package creds

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/idopipe/idopipe/pkg/fail"
)

// DefaultTokenFile is read when present and no other source is given.
const DefaultTokenFile = ".github-token"

// Credentials are the username and token for the registry, and where the
// token came from (for error messages: "the token from $GITHUB_TOKEN").
type Credentials struct {
	Username string
	Token    Secret
	Source   string
}

// Authenticator returns basic auth for go-containerregistry.
func (c Credentials) Authenticator() authn.Authenticator {
	return authn.FromConfig(authn.AuthConfig{Username: c.Username, Password: c.Token.Reveal()})
}

// Options say where to look. Env holds the values of the environment
// variables EnvKeys names (GITHUB_ACTOR and TokenEnv), read by the caller
// once; nil means no environment.
type Options struct {
	Username  string // --username; else $GITHUB_ACTOR
	TokenFile string // --token-file; read first when set
	Dir       string // where DefaultTokenFile is looked for; "" is the working directory
	Env       map[string]string
	Warn      func(string) // told about risky files (token readable by others)
	// Registry and Keychain: when no token is found elsewhere, the keychain
	// (authn.DefaultKeychain: docker config and credential helpers) is asked
	// for Registry's credentials.
	Registry string
	Keychain authn.Keychain
}

// TokenEnv lists the environment variables read for the token, in order.
var TokenEnv = []string{"GITHUB_TOKEN", "GHCR_TOKEN"}

// ActorEnv is the environment variable the username defaults to.
const ActorEnv = "GITHUB_ACTOR"

// EnvKeys are the environment variables Resolve reads from Options.Env.
func EnvKeys() []string { return append([]string{ActorEnv}, TokenEnv...) }

// Resolve finds the credentials: --token-file, then $GITHUB_TOKEN, then
// $GHCR_TOKEN, then ./.github-token when present, then the docker config
// (credential helpers included) for the registry.
func Resolve(o Options) (Credentials, error) {
	c := Credentials{Username: o.Username}
	if c.Username == "" {
		c.Username = o.Env[ActorEnv]
	}
	var err error
	switch {
	case o.TokenFile != "":
		c.Token, err = readTokenFile(o.TokenFile, o.Warn)
		c.Source = "--token-file " + o.TokenFile
	default:
		for _, k := range TokenEnv {
			if v := o.Env[k]; v != "" {
				c.Token, err = checkToken(v, "$"+k)
				c.Source = "$" + k
				break
			}
		}
		if c.Source == "" {
			p := filepath.Join(o.Dir, DefaultTokenFile)
			if _, statErr := os.Stat(p); statErr == nil {
				c.Token, err = readTokenFile(p, o.Warn)
				c.Source = p
			}
		}
	}
	if err != nil {
		return Credentials{}, err
	}
	if c.Source == "" && o.Keychain != nil && o.Registry != "" {
		if kc, ok, err := fromKeychain(o.Keychain, o.Registry); err != nil {
			return Credentials{}, err
		} else if ok {
			if c.Username == "" {
				c.Username = kc.Username
			}
			c.Token, c.Source = kc.Token, kc.Source
		}
	}
	if c.Source == "" {
		return Credentials{}, fail.New(fail.Credentials,
			"set $GITHUB_TOKEN, or pass --token-file FILE, or create "+DefaultTokenFile+" (a token with write:packages)",
			"no registry token found")
	}
	if err := checkKind(c); err != nil {
		return Credentials{}, err
	}
	if c.Username == "" {
		return Credentials{}, fail.New(fail.Credentials, "pass --username or set $GITHUB_ACTOR",
			"no registry username")
	}
	return c, nil
}

// FineGrainedPrefix starts a GitHub fine-grained personal access token.
const FineGrainedPrefix = "github_pat_"

// checkKind refuses a token that GitHub's registries refuse, before any
// request is sent: GHCR (like every GitHub Packages registry) accepts
// classic personal access tokens (ghp_…), GITHUB_TOKEN and OAuth tokens,
// but not fine-grained ones (github_pat_…), which get a bare permission
// error from it long after the build.
func checkKind(c Credentials) error {
	if strings.HasPrefix(c.Token.Reveal(), FineGrainedPrefix) {
		return fail.New(fail.Credentials,
			"create a classic token (ghp_…) with write:packages, or in GitHub Actions use GITHUB_TOKEN with permissions: packages: write",
			"the token from %s is a fine-grained personal access token (github_pat_…), which GHCR does not accept", c.Source)
	}
	return nil
}

func readTokenFile(path string, warn func(string)) (Secret, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Secret{}, fail.New(fail.Credentials, "check the path given to --token-file", "token file %s does not exist", path)
	case err != nil:
		return Secret{}, fail.Wrap(fail.Credentials, err, "make the file readable by this user", "cannot read token file %s", path)
	case fi.IsDir():
		return Secret{}, fail.New(fail.Credentials, "point --token-file at a file holding the token", "token file %s is a directory", path)
	}
	if fi.Mode().Perm()&0o077 != 0 && warn != nil {
		warn(fmt.Sprintf("token file %s is readable by group or others (mode %04o): run chmod 600 %s", path, fi.Mode().Perm(), path))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Secret{}, fail.Wrap(fail.Credentials, errors.Unwrap(err), "make the file readable by this user", "cannot read token file %s", path)
	}
	return checkToken(strings.TrimRight(string(b), "\r\n"), "token file "+path)
}

// checkToken rejects tokens that cannot be right: empty, or holding
// whitespace or control characters (a stray space is a common paste error and
// would be sent to the registry as part of the password).
func checkToken(v, source string) (Secret, error) {
	if v == "" {
		return Secret{}, fail.New(fail.Credentials, "put the token in it", "%s is empty", source)
	}
	for _, r := range v {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return Secret{}, fail.New(fail.Credentials, "remove the whitespace around the token", "%s holds whitespace or control characters", source)
		}
	}
	return NewSecret(v), nil
}

// fromKeychain asks the keychain for the registry's username and password
// (or identity token); ok is false when it has none.
func fromKeychain(kc authn.Keychain, registry string) (Credentials, bool, error) {
	reg, err := name.NewRegistry(registry)
	if err != nil {
		return Credentials{}, false, nil //nolint:nilerr // an invalid registry is reported where it is used
	}
	auth, err := kc.Resolve(reg)
	if err != nil {
		return Credentials{}, false, fail.Wrap(fail.Credentials, err, "check ~/.docker/config.json and its credential helpers", "cannot read docker credentials for %s", registry)
	}
	if auth == authn.Anonymous {
		return Credentials{}, false, nil
	}
	cfg, err := authn.Authorization(context.Background(), auth)
	if err != nil {
		return Credentials{}, false, fail.Wrap(fail.Credentials, err, "check ~/.docker/config.json and its credential helpers", "cannot read docker credentials for %s", registry)
	}
	pass := cfg.Password
	if pass == "" {
		pass = cfg.IdentityToken
	}
	if pass == "" {
		return Credentials{}, false, nil
	}
	return Credentials{Username: cfg.Username, Token: NewSecret(pass), Source: "docker config for " + registry}, true, nil
}
