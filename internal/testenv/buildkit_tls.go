package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	bkclient "github.com/moby/buildkit/client"
)

// BuildKitTLS is a buildkitd on tcp://127.0.0.1:PORT that requires mTLS:
// the shape of a shared buildkitd in a cluster (deploy/buildkit).
type BuildKitTLS struct {
	*BuildKit
	CACert     string // the CA that signed both certificates (PEM)
	ClientCert string // client certificate and key the daemon accepts
	ClientKey  string
}

// StartBuildKitTLS starts a buildkitd with empty state under dir listening
// on loopback TCP with mTLS; certificates are made under dir/certs.
func StartBuildKitTLS(ctx context.Context, dir string) (*BuildKitTLS, error) {
	tools, err := ToolsDir()
	if err != nil {
		return nil, err
	}
	certs := filepath.Join(dir, "certs")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		return nil, err
	}
	b := &BuildKitTLS{
		CACert:     filepath.Join(certs, "ca.pem"),
		ClientCert: filepath.Join(certs, "client.pem"),
		ClientKey:  filepath.Join(certs, "client-key.pem"),
	}
	serverCert, serverKey := filepath.Join(certs, "cert.pem"), filepath.Join(certs, "key.pem")
	if err := makeMTLS(b.CACert, serverCert, serverKey, b.ClientCert, b.ClientKey); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`root = %q
[grpc]
  address = [%q]
  [grpc.tls]
    cert = %q
    key = %q
    ca = %q
[worker.oci]
  enabled = true
  binary = "runc"
[worker.containerd]
  enabled = false
`, filepath.Join(dir, "root"), addr, serverCert, serverKey, b.CACert)
	cfgPath := filepath.Join(dir, "buildkitd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	b.BuildKit = &BuildKit{Address: addr, Dir: dir}
	b.proc, err = startProcess(dir, "buildkitd", filepath.Join(tools, "buildkitd"),
		[]string{"--config", cfgPath}, []string{"PATH=" + os.Getenv("PATH") + ":/usr/sbin:/sbin"})
	if err != nil {
		return nil, err
	}
	err = b.proc.waitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		c, err := bkclient.New(ctx, addr, bkclient.WithServerConfig("127.0.0.1", b.CACert), bkclient.WithCredentials(b.ClientCert, b.ClientKey))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.ListWorkers(ctx)
		return err
	})
	if err != nil {
		b.Stop()
		return nil, err
	}
	return b, nil
}

// makeMTLS writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, each signed by the CA.
func makeMTLS(caPath, certPath, keyPath, clientPath, clientKeyPath string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "idopipe test buildkit CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := writePEM(caPath, "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP, cert, key string) error {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			return err
		}
		return writeCertKey(cert, key, der, k)
	}
	if err := issue(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")}, certPath, keyPath); err != nil {
		return err
	}
	return issue(3, "idopipe", x509.ExtKeyUsageClientAuth, nil, clientPath, clientKeyPath)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}
