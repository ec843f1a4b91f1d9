package build

import (
	"context"
	"io"
	"slices"
	"sync"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth"
	"google.golang.org/grpc"
)

// Credential is what a registry host is given, and what it is, for the
// error when the registry refuses it ("the token from $GITHUB_TOKEN (user
// me)").
type Credential struct {
	Username string
	Secret   string
	Source   string
}

// Credentials give buildkitd, through the build session, the registry
// credentials it asks for: to pull a base image, or to import and export a
// registry cache. A host they have none for (ok false) is looked up in the
// docker config.
type Credentials interface {
	Lookup(host string) (c Credential, ok bool)
}

// Hinter is implemented by Credentials that can say how to give a host
// credentials that it has none for: the fix in the error of a registry
// that refused anonymous access.
type Hinter interface {
	Hint(host string) string
}

// StaticCredentials are one username and secret for a set of hosts.
type StaticCredentials struct {
	Hosts    []string
	Username string
	Secret   string
	Source   string // for errors: "the token from …"; default "the credentials given"
}

// Lookup implements Credentials.
func (c StaticCredentials) Lookup(host string) (Credential, bool) {
	if !slices.Contains(c.Hosts, host) || c.Secret == "" {
		return Credential{}, false
	}
	src := c.Source
	if src == "" {
		src = "the credentials given"
	}
	return Credential{Username: c.Username, Secret: c.Secret, Source: src}, true
}

// authServer answers buildkitd's credential requests from creds first, then
// from the docker config ($DOCKER_CONFIG or ~/.docker, credential helpers
// included), as buildctl does; nothing is written to disk. It offers no
// token authority, so buildkitd fetches registry tokens itself with these
// credentials. It remembers what it gave each host, for the error of a
// registry that refuses it.
type authServer struct {
	auth.UnimplementedAuthServer
	creds  Credentials
	docker func() *configfile.ConfigFile

	mu     sync.Mutex
	served map[string]string // host → source of what it was given ("" none)
}

func newAuthServer(creds Credentials) *authServer {
	return &authServer{creds: creds, served: map[string]string{}, docker: sync.OnceValue(func() *configfile.ConfigFile {
		return config.LoadDefaultConfigFile(io.Discard)
	})}
}

// Register implements session.Attachable.
func (a *authServer) Register(s *grpc.Server) { auth.RegisterAuthServer(s, a) }

var _ session.Attachable = (*authServer)(nil)

// Credentials implements auth.AuthServer.
func (a *authServer) Credentials(_ context.Context, req *auth.CredentialsRequest) (*auth.CredentialsResponse, error) {
	c := a.lookup(req.Host)
	a.mu.Lock()
	a.served[req.Host] = c.Source
	a.mu.Unlock()
	return &auth.CredentialsResponse{Username: c.Username, Secret: c.Secret}, nil
}

func (a *authServer) lookup(host string) Credential {
	if a.creds != nil {
		if c, ok := a.creds.Lookup(host); ok {
			return c
		}
	}
	cfgHost := host
	if cfgHost == "registry-1.docker.io" {
		cfgHost = "https://index.docker.io/v1/"
	}
	cf := a.docker()
	ac, err := cf.GetAuthConfig(cfgHost)
	if err != nil {
		return Credential{} // anonymous
	}
	src := "the credentials in the docker config " + cf.Filename
	if ac.IdentityToken != "" {
		return Credential{Secret: ac.IdentityToken, Source: src}
	}
	if ac.Password == "" {
		return Credential{}
	}
	return Credential{Username: ac.Username, Secret: ac.Password, Source: src}
}

// servedTo says what host was given: its source, and whether buildkitd
// asked at all.
func (a *authServer) servedTo(host string) (source string, asked bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	source, asked = a.served[host]
	return source, asked
}

// hosts lists the hosts buildkitd asked about.
func (a *authServer) hosts() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for h := range a.served {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

// hint says how to give host credentials it had none for.
func (a *authServer) hint(host string) string {
	if h, ok := a.creds.(Hinter); ok {
		if s := h.Hint(host); s != "" {
			return s
		}
	}
	return "run `docker login " + host + "`, or give idopipe a token for it"
}
