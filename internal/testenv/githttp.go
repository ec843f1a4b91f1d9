package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os/exec"
	"time"
)

// GitServer serves the bare repositories under Root over git's smart HTTP
// protocol (git http-backend) on loopback: a stand-in for GitHub when a
// build context is a git URL that BuildKit fetches itself.
type GitServer struct {
	URL  string // http://127.0.0.1:PORT; a repository is URL/NAME.git
	Root string
	srv  *http.Server
}

// StartGitServer serves root until Stop.
func StartGitServer(root string) (*GitServer, error) {
	git, err := exec.LookPath("git")
	if err != nil {
		return nil, errors.New("git not found: install Debian's git")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &cgi.Handler{
		Path: git, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1"},
	}
	g := &GitServer{URL: fmt.Sprintf("http://%s", l.Addr()), Root: root, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	go func() { _ = g.srv.Serve(l) }()
	return g, nil
}

// Stop ends the server.
func (g *GitServer) Stop() {
	if g != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.srv.Shutdown(ctx)
	}
}
