package testenv

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is a distribution registry on loopback with TLS: the stand-in for
// GHCR, with GHCR's token flow (see token.go and front.go): distribution v3
// with auth: token behind a TLS front that serves /token on the same host
// and port. The node's docker.io mirror is one without auth and front.
type Registry struct {
	Host     string // 127.0.0.1:PORT, what clients use
	CAFile   string // its self-signed certificate, PEM
	Username string
	Password string // the default PAT: write:packages on every owner's packages
	Root     string // storage root directory
	proc     *process
	front    *tokenFront   // nil for the mirror
	tokens   *tokenService // nil for the mirror
}

// The token service's names: the JWT's issuer, and its audience (GHCR's
// service is its host name, ghcr.io; here the host:port).
const tokenIssuer = "idopipe-test-ghcr"

// startRegistry starts the GHCR stand-in, or (anonymous) a registry that
// anybody on loopback may read and write: the node's docker.io mirror.
func startRegistry(ctx context.Context, tools, dir string, anonymous bool) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &Registry{
		CAFile: filepath.Join(dir, "cert.pem"),
		Root:   filepath.Join(dir, "storage"),
	}
	keyFile := filepath.Join(dir, "key.pem")
	if err := selfSigned(r.CAFile, keyFile); err != nil {
		return nil, err
	}
	var listen, tlsCfg, authCfg string
	want := http.StatusOK
	if anonymous {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		r.Host = fmt.Sprintf("127.0.0.1:%d", port)
		listen = r.Host
		tlsCfg = fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", r.CAFile, keyFile)
	} else {
		// The front holds its listener from now on; distribution gets a
		// second loopback port, plain HTTP, that only the front uses.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		r.Host = l.Addr().String()
		port, err := freePort()
		if err != nil {
			l.Close()
			return nil, err
		}
		listen = fmt.Sprintf("127.0.0.1:%d", port)
		if r.tokens, err = newTokenService(tokenIssuer, r.Host); err != nil {
			l.Close()
			return nil, err
		}
		root, err := r.tokens.rootCert()
		if err != nil {
			l.Close()
			return nil, err
		}
		bundle := filepath.Join(dir, "token-issuer.pem")
		if err := writePEM(bundle, "CERTIFICATE", root, 0o644); err != nil {
			l.Close()
			return nil, err
		}
		cert, err := tls.LoadX509KeyPair(r.CAFile, keyFile)
		if err != nil {
			l.Close()
			return nil, err
		}
		r.Username = "ido-bot"
		r.Password = r.tokens.addPAT(r.Username, WritePackages, nil)
		// autoredirect: the challenge's realm is https://<the Host the
		// client used>/token, so a proxy in front (proxy.go) is its own
		// realm, as go-containerregistry requires.
		authCfg = fmt.Sprintf(`auth:
  token:
    realm: https://%s/token
    autoredirect: true
    autoredirectpath: /token
    service: %s
    issuer: %s
    rootcertbundle: %s
    signingalgorithms: [EdDSA]
`, r.Host, r.Host, tokenIssuer, bundle)
		r.front = startTokenFront(l, cert, r.tokens, listen)
		want = http.StatusUnauthorized
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
  relativeurls: false
%s%s`, r.Root, listen, tlsCfg, authCfg)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		r.Stop()
		return nil, err
	}
	var err error
	r.proc, err = startProcess(dir, "registry", filepath.Join(tools, "registry"), []string{"serve", cfgPath}, nil)
	if err != nil {
		r.Stop()
		return nil, err
	}
	client, err := r.HTTPClient()
	if err != nil {
		r.Stop()
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
		if !anonymous && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer realm=") {
			return fmt.Errorf("GET /v2/ challenged with %q, want Bearer", resp.Header.Get("WWW-Authenticate"))
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

// Stop ends the registry and its front.
func (r *Registry) Stop() {
	if r != nil {
		r.front.close()
		r.proc.stop(5 * time.Second)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// auth is the registry's token service; the mirror has none.
func (r *Registry) auth() *tokenService {
	if r.tokens == nil {
		panic("testenv: registry " + r.Host + " has no token auth (the docker.io mirror is anonymous)")
	}
	return r.tokens
}

// SetPublic makes a package (repository OWNER/NAME, or HOST/OWNER/NAME)
// public or private, as its settings on GitHub do. Packages start private.
func (r *Registry) SetPublic(repo string, public bool) {
	t := r.auth()
	repo = strings.ToLower(strings.TrimPrefix(repo, r.Host+"/"))
	t.mu.Lock()
	defer t.mu.Unlock()
	if public {
		t.public[repo] = true
	} else {
		delete(t.public, repo)
	}
}

// IssuePAT makes a new classic personal access token of user with scope,
// reaching the private packages of owners (none: of every owner, as the
// default PAT does). The token is a secret: tests keep it in the
// environment, never in arguments.
func (r *Registry) IssuePAT(user string, scope PackageScope, owners ...string) string {
	return r.auth().addPAT(user, scope, owners)
}

// IssueActionsToken makes a workflow's GITHUB_TOKEN (ghs_…) for a
// repository of owner: read, or write with permissions: packages: write. A
// write without it is refused with GHCR's "permission_denied:
// write_package".
func (r *Registry) IssueActionsToken(owner string, scope PackageScope) string {
	return r.auth().add("ghs_idopipeTEST", &pat{actions: true, user: "github-actions", write: scope == WritePackages}, []string{owner})
}

// RevokePAT revokes a PAT: the token endpoint refuses it from now on (403
// DENIED). Tokens already issued for it stay valid until they expire, as
// bearer tokens do.
func (r *Registry) RevokePAT(token string) {
	t := r.auth()
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.pats[token]; p != nil {
		p.revoked = true
	}
}

// SetTokenLifetime sets how long the bearer tokens issued from now on stay
// valid (5 minutes at start) and returns the previous lifetime.
func (r *Registry) SetTokenLifetime(d time.Duration) time.Duration {
	t := r.auth()
	t.mu.Lock()
	defer t.mu.Unlock()
	prev := t.lifetime
	t.lifetime = d
	return prev
}

// TokenStats counts what the token flow did so far.
type TokenStats struct {
	Issued  int64 // bearer tokens handed out by /token
	Expired int64 // requests refused because their token had expired
}

// TokenStats is what the token flow did so far.
func (r *Registry) TokenStats() TokenStats {
	t := r.auth()
	return TokenStats{Issued: t.issued.Load(), Expired: t.rejected.Load()}
}

// CorruptImage is an image of which CorruptImage changed a layer's bytes in
// the registry's storage.
type CorruptImage struct {
	Ref    string // HOST/REPO:corrupt
	Digest string // the image's manifest digest (the manifest is intact)
	Layer  string // the digest of the layer whose stored bytes no longer match it
	Size   int64  // that layer's size, kept
}

// CorruptImage pushes to repo (OWNER/NAME) a new image of one random layer,
// then flips 16 bytes in the middle of that layer's data in the registry's
// storage, keeping its size: the layer reads back with its size but
// another sha256, as from a failing disk.
//
// The layer is the image's own on purpose. distribution stores a blob once
// per digest (blobs/sha256/xx/DIGEST/data), linked from every repository
// that holds it, and a later upload of the same digest finds it there and
// leaves it as it is (blobwriter.go moveBlob). Corrupting a layer that
// other images share corrupts it for all of them, for the rest of the
// registry's life: flipping the planner layer that every end-to-end test
// builds made other tests' verify-pull --full read it "with its size but
// another digest" (exit 12), in about one full run of 13.
func (r *Registry) CorruptImage(ctx context.Context, repo string) (CorruptImage, error) {
	img, err := PlatformImage("linux", runtime.GOARCH, 64<<10, 1)
	if err != nil {
		return CorruptImage{}, err
	}
	tag, err := name.NewTag(r.Host+"/"+repo+":corrupt", name.StrictValidation)
	if err != nil {
		return CorruptImage{}, err
	}
	client, err := r.HTTPClient()
	if err != nil {
		return CorruptImage{}, err
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(client.Transport)}
	if r.tokens != nil {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: r.Username, Password: r.Password}))
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		return CorruptImage{}, fmt.Errorf("push %s: %w", tag, err)
	}
	d, err := img.Digest()
	if err != nil {
		return CorruptImage{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return CorruptImage{}, err
	}
	h, err := layers[0].Digest()
	if err != nil {
		return CorruptImage{}, err
	}
	data := filepath.Join(r.Root, "docker", "registry", "v2", "blobs", h.Algorithm, h.Hex[:2], h.Hex, "data")
	b, err := os.ReadFile(data)
	if err != nil {
		return CorruptImage{}, err
	}
	for i := len(b) / 2; i < len(b)/2+16 && i < len(b); i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(data, b, 0o644); err != nil {
		return CorruptImage{}, err
	}
	return CorruptImage{Ref: tag.String(), Digest: d.String(), Layer: h.String(), Size: int64(len(b))}, nil
}
