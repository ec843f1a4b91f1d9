package testenv

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
)

// sigstoreOrg is the Organization of the stack's CAs. gh picks its
// verifier by the Organization of the certificate's issuer: "sigstore.dev"
// and "GitHub, Inc." select the public-good and GitHub instances' rules,
// anything else (this) a custom instance's, which needs a signed timestamp
// and, when the trusted root has a log, a log entry.
const sigstoreOrg = "idopipe test sigstore"

// newFulcio prepares Fulcio v1.8.8 with a file CA (a self-signed P-256
// root made here, kept across restarts), no CT log, and a configuration
// that names only the stack's issuer, type github-workflow (without one
// Fulcio falls back to the public issuers and calls out).
func newFulcio(tools, dir, issuerURL string) (*daemon, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	keyPath, certPath, cfgPath := filepath.Join(dir, "ca-key.pem"), filepath.Join(dir, "ca.pem"), filepath.Join(dir, "config.json")
	key, err := newKey(keyPath)
	if err != nil {
		return nil, err
	}
	ca, err := selfSignedCA(key, "idopipe test fulcio", time.Now())
	if err != nil {
		return nil, err
	}
	if err := writeChain(certPath, ca); err != nil {
		return nil, err
	}
	cfg, err := json.Marshal(map[string]any{"OIDCIssuers": map[string]any{
		issuerURL: map[string]string{"IssuerURL": issuerURL, "ClientID": "sigstore", "Type": "github-workflow"},
	}})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return nil, err
	}
	return &daemon{
		name: "fulcio", bin: filepath.Join(tools, "fulcio"), dir: dir, nports: 3,
		// HTTP and gRPC on ports of their own: Fulcio v1.8.8's duplex
		// server (one port for both) panics registering its metrics
		// twice. The legacy gRPC server then listens on a unix socket,
		// by default an abstract one with a fixed name (one per
		// machine): here a file in dir.
		args: func(p []int) []string {
			return []string{"serve", "--log_type=prod",
				"--ca=fileca", "--fileca-cert=" + certPath, "--fileca-key=" + keyPath,
				// The key file is unencrypted (0600 in the stack's
				// directory); Fulcio insists the flag be set.
				"--fileca-key-passwd=", "--fileca-watch=false",
				"--ct-log-url=", "--config-path=" + cfgPath,
				"--host=127.0.0.1", "--port=" + strconv.Itoa(p[0]), "--grpc-host=127.0.0.1", "--grpc-port=" + strconv.Itoa(p[1]),
				"--metrics-port=" + strconv.Itoa(p[2]), "--legacy-unix-domain-socket=" + filepath.Join(dir, "legacy.sock")}
		},
		// A stopped Fulcio leaves its socket behind, and binding it
		// again fails.
		prepare: func() error {
			if err := os.Remove(filepath.Join(dir, "legacy.sock")); err != nil && !os.IsNotExist(err) {
				return err
			}
			return nil
		},
		readyPath: "/api/v2/trustBundle",
		pki:       &keys{chain: []*x509.Certificate{ca}, created: ca.NotBefore},
	}, nil
}

// fulcioCA is Fulcio's CA for the trusted root.
func (k *keys) fulcioCA(url string) (*root.FulcioCertificateAuthority, error) {
	if len(k.chain) == 0 {
		return nil, fmt.Errorf("fulcio has no CA")
	}
	return &root.FulcioCertificateAuthority{
		Root: k.chain[len(k.chain)-1], Intermediates: k.chain[:len(k.chain)-1],
		ValidityPeriodStart: k.created, URI: url,
	}, nil
}
