package build

import (
	"context"
	"io"
	"sync"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth"
	"google.golang.org/grpc"
)

// Credentials gives buildkitd, through the build session, the registry
// credentials it asks for: to import and export a registry cache, or to
// pull a private base image. ok is false when there are none for host.
type Credentials interface {
	Lookup(host string) (username, secret string, ok bool)
}

// StaticCredentials are one username and secret for a set of hosts.
type StaticCredentials struct {
	Hosts    []string
	Username string
	Secret   string
}

// Lookup implements Credentials.
func (c StaticCredentials) Lookup(host string) (string, string, bool) {
	for _, h := range c.Hosts {
		if h == host {
			return c.Username, c.Secret, c.Secret != ""
		}
	}
	return "", "", false
}

// authServer answers buildkitd's credential requests from creds first, then
// from the docker config ($DOCKER_CONFIG or ~/.docker, credential helpers
// included), as buildctl does. It offers no token authority, so buildkitd
// fetches registry tokens itself with these credentials.
type authServer struct {
	auth.UnimplementedAuthServer
	creds  Credentials
	docker func() *configfile.ConfigFile
}

func authAttachable(creds Credentials) session.Attachable {
	return &authServer{creds: creds, docker: sync.OnceValue(func() *configfile.ConfigFile {
		return config.LoadDefaultConfigFile(io.Discard)
	})}
}

// Register implements session.Attachable.
func (a *authServer) Register(s *grpc.Server) { auth.RegisterAuthServer(s, a) }

// Credentials implements auth.AuthServer.
func (a *authServer) Credentials(_ context.Context, req *auth.CredentialsRequest) (*auth.CredentialsResponse, error) {
	if a.creds != nil {
		if u, s, ok := a.creds.Lookup(req.Host); ok {
			return &auth.CredentialsResponse{Username: u, Secret: s}, nil
		}
	}
	host := req.Host
	if host == "registry-1.docker.io" {
		host = "https://index.docker.io/v1/"
	}
	ac, err := a.docker().GetAuthConfig(host)
	if err != nil {
		return &auth.CredentialsResponse{}, nil // anonymous
	}
	if ac.IdentityToken != "" {
		return &auth.CredentialsResponse{Secret: ac.IdentityToken}, nil
	}
	return &auth.CredentialsResponse{Username: ac.Username, Secret: ac.Password}, nil
}
