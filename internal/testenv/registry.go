package testenv

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Registry is a distribution registry on loopback with TLS and htpasswd
// auth: the stand-in for GHCR.
type Registry struct {
	Host     string // 127.0.0.1:PORT
	CAFile   string // its self-signed certificate, PEM
	Username string
	Password string // the "personal access token"
	Root     string // storage root directory
	proc     *process
}

// startRegistry starts a registry with htpasswd auth, or (anonymous) one
// that anybody on loopback may read and write: the node's docker.io mirror.
func startRegistry(ctx context.Context, tools, dir string, anonymous bool) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	r := &Registry{
		Host:     fmt.Sprintf("127.0.0.1:%d", port),
		CAFile:   filepath.Join(dir, "cert.pem"),
		Username: "ido-bot",
		Password: "ghp_idopipeTEST" + randomHex(16), // recognisable in leak greps
		Root:     filepath.Join(dir, "storage"),
	}
	keyFile := filepath.Join(dir, "key.pem")
	if err := selfSigned(r.CAFile, keyFile); err != nil {
		return nil, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
	if err != nil {
		return nil, err
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(r.Username+":"+string(hash)+"\n"), 0o600); err != nil {
		return nil, err
	}
	authCfg := fmt.Sprintf("auth:\n  htpasswd:\n    realm: idopipe-test\n    path: %s\n", htpasswd)
	want := http.StatusUnauthorized
	if anonymous {
		authCfg, want = "", http.StatusOK
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  tls:
    certificate: %s
    key: %s
%s`, r.Root, r.Host, r.CAFile, keyFile, authCfg)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	r.proc, err = startProcess(dir, "registry", filepath.Join(tools, "registry"), []string{"serve", cfgPath}, nil)
	if err != nil {
		return nil, err
	}
	client, err := r.HTTPClient()
	if err != nil {
		return nil, err
	}
	err = r.proc.waitFor(ctx, 20*time.Second, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+r.Host+"/v2/", nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			return fmt.Errorf("GET /v2/ answered %d, want %d", resp.StatusCode, want)
		}
		return nil
	})
	if err != nil {
		r.Stop()
		return nil, err
	}
	return r, nil
}

// HTTPClient trusts the registry's certificate.
func (r *Registry) HTTPClient() (*http.Client, error) {
	pem, err := os.ReadFile(r.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, nil
}

// Stop ends the registry.
func (r *Registry) Stop() {
	if r != nil {
		r.proc.stop(5 * time.Second)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
