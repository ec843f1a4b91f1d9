package testenv

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// daemon is one server of the Sigstore instance: a child process on
// loopback ports chosen at its first start and kept, so a restart keeps
// its URL, with the keys it was given (pki) and an HTTP readiness check.
type daemon struct {
	name, bin, dir string
	nports         int                        // ports it needs; ports[0] serves its API
	args           func(ports []int) []string // its command line (names dir: the reaper kills by it)
	readyPath      string                     // GET url()+readyPath answers 200 once it serves
	extra          []*os.File                 // files the child inherits (the TSA's machine lock)
	prepare        func() error               // runs before each start; nil for none
	pki            *keys

	mu    sync.Mutex
	ports []int
	proc  *process
}

// url is the daemon's base URL.
func (d *daemon) url() string { return fmt.Sprintf("http://127.0.0.1:%d", d.ports[0]) }

// start runs the daemon and waits until it serves. The first start picks
// fresh ports and picks again when one was taken in the meantime; later
// starts reuse them.
func (d *daemon) start(ctx context.Context, first bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc != nil && !d.proc.exited() {
		return fmt.Errorf("%s is already running", d.name)
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if first {
			d.ports = d.ports[:0]
			for range d.nports {
				p, err := freePort()
				if err != nil {
					return err
				}
				d.ports = append(d.ports, p)
			}
		}
		if err = d.run(ctx); err == nil || !first || !addressInUse(d.proc.tail()) {
			return err
		}
	}
	return err
}

func (d *daemon) run(ctx context.Context) error {
	if d.prepare != nil {
		if err := d.prepare(); err != nil {
			return err
		}
	}
	p, err := startProcessWith(d.dir, d.name, d.bin, d.args(d.ports), nil, d.extra)
	if err != nil {
		return err
	}
	d.proc = p
	client := &http.Client{Timeout: 2 * time.Second}
	err = p.waitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.url()+d.readyPath, nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s answered %s", d.readyPath, resp.Status)
		}
		return nil
	})
	if err != nil {
		p.stop(5 * time.Second)
	}
	return err
}

// stop ends the daemon; safe when it is not running.
func (d *daemon) stop() {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.proc.stop(5 * time.Second)
}

// keys are what a daemon signs with and what the trusted root says of it.
type keys struct {
	chain   []*x509.Certificate // leaf first: Fulcio's CA; the TSA's leaf and root
	pub     crypto.PublicKey    // Rekor's checkpoint key
	created time.Time
}

// newKey makes a P-256 key and writes it, PKCS#8 PEM, readable by the
// owner only.
func newKey(path string) (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return key, writePEM(path, "PRIVATE KEY", der, 0o600)
}

// writeChain writes certificates as one PEM file.
func writeChain(path string, certs ...*x509.Certificate) error {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return os.WriteFile(path, b, 0o644)
}

// selfSignedCA is a root CA certificate for key, valid from a minute
// before now for a year, in the organization gh treats as a custom root
// (sigstoreOrg).
func selfSignedCA(key *ecdsa.PrivateKey, commonName string, now time.Time) (*x509.Certificate, error) {
	serial, err := cryptoutils.GenerateSerialNumber()
	if err != nil {
		return nil, err
	}
	start := now.Add(-time.Minute).Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{sigstoreOrg}},
		NotBefore:             start,
		NotAfter:              start.AddDate(1, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            1,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}
