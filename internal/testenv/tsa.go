package testenv

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// oidExtKeyUsage is the extended key usage extension: RFC 3161 wants the
// TSA's marked critical, with timeStamping its one purpose, which Go's
// x509 does not write by itself.
var (
	oidExtKeyUsage  = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidTimeStamping = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}
)

// newTSA prepares the timestamp authority (timestamp-authority v2.1.3)
// with the file signer: a root and a timestamping leaf made here, so its
// chain (which the trusted root names) survives a restart, where the
// memory signer would make a new one each start. NTP monitoring is off
// (it would call out). Its metrics listen on :2112 whatever the flags say:
// one per machine, see tsaLock.
func newTSA(tools, dir string) (*daemon, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	keyPath, chainPath := filepath.Join(dir, "signer-key.pem"), filepath.Join(dir, "chain.pem")
	rootKey, err := newKey(filepath.Join(dir, "root-key.pem"))
	if err != nil {
		return nil, err
	}
	leafKey, err := newKey(keyPath)
	if err != nil {
		return nil, err
	}
	rootCert, err := selfSignedCA(rootKey, "idopipe test TSA root", time.Now())
	if err != nil {
		return nil, err
	}
	now := rootCert.NotBefore
	serial, err := cryptoutils.GenerateSerialNumber()
	if err != nil {
		return nil, err
	}
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{oidTimeStamping})
	if err != nil {
		return nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: "idopipe test TSA", Organization: []string{sigstoreOrg}},
		NotBefore:       now,
		NotAfter:        now.AddDate(1, 0, 0),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{{Id: oidExtKeyUsage, Critical: true, Value: eku}},
	}
	der, err := x509.CreateCertificate(rand.Reader, leafTmpl, rootCert, leafKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := writeChain(chainPath, leaf, rootCert); err != nil {
		return nil, err
	}
	// The root's key is no longer needed: only the leaf signs.
	if err := os.Remove(filepath.Join(dir, "root-key.pem")); err != nil {
		return nil, err
	}
	return &daemon{
		name: "timestamp-server", bin: filepath.Join(tools, "timestamp-server"), dir: dir, nports: 1,
		args: func(p []int) []string {
			return []string{"serve", "--log-type=prod", "--host=127.0.0.1", "--port=" + strconv.Itoa(p[0]),
				"--timestamp-signer=file", "--file-signer-key-path=" + keyPath, "--certificate-chain-path=" + chainPath,
				"--disable-ntp-monitoring"}
		},
		readyPath: "/api/v1/timestamp/certchain",
		pki:       &keys{chain: []*x509.Certificate{leaf, rootCert}, created: now},
	}, nil
}

// timestampingAuthority is the TSA for the trusted root.
func (k *keys) timestampingAuthority(url string) (*root.SigstoreTimestampingAuthority, error) {
	if len(k.chain) < 2 {
		return nil, fmt.Errorf("the timestamp authority has no chain")
	}
	n := len(k.chain)
	return &root.SigstoreTimestampingAuthority{
		Leaf: k.chain[0], Intermediates: k.chain[1 : n-1], Root: k.chain[n-1],
		ValidityPeriodStart: k.created, URI: url,
	}, nil
}
