package testenv

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	prototrustroot "github.com/sigstore/protobuf-specs/gen/pb-go/trustroot/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
)

// Sigstore is a private Sigstore instance on loopback, as GitHub Actions
// would see one: the GitHub-shaped OIDC issuer (in this process), Fulcio
// (file CA, no CT log, the issuer configured with type github-workflow),
// the timestamp authority (file signer, NTP monitoring off) and Rekor v2
// (rekor-tiles, POSIX storage). All speak plain HTTP on 127.0.0.1; each
// keeps its key, configuration, state and log under the stack's
// directory, and its keys and certificates survive a restart (Stop*/Start*),
// so the trusted root stays valid across the fault tests.
type Sigstore struct {
	IssuerURL string // the issuer its certificates name (http://127.0.0.1:PORT)
	FulcioURL string // Fulcio's base URL
	TSAURL    string // the timestamp endpoint, …/api/v1/timestamp
	RekorURL  string // Rekor v2's base URL
	// TrustedRoot is this instance's trusted_root.json (Fulcio's CA, the
	// TSA's chain, Rekor v2's key), one line of JSON: what cosign v3
	// (--trusted-root), gh (--custom-trusted-root, which reads JSON lines)
	// and sigstore-go read.
	TrustedRoot string
	// TrustedRootNoLog is the same without the Rekor log, as GitHub's own
	// instance is (Fulcio + TSA): verifiers given it require a signed
	// timestamp and no log entry.
	TrustedRootNoLog string
	// SigningConfig is a signing_config v0.2 naming the issuer, Fulcio,
	// Rekor v2 and the TSA (cosign v3 --signing-config).
	SigningConfig string
	// SigningConfigNoLog names Fulcio and the TSA only.
	SigningConfigNoLog string
	CAFile             string // TLS CA of the servers: "" (they speak plain HTTP on loopback)
	Issuer             *Issuer

	dir, tools         string
	fulcio, tsa, rekor *daemon
	tsaLock            *os.File
	mu                 sync.Mutex
}

// sigstoreParts is the order the servers start in: Fulcio reads the
// issuer's discovery document as it starts, so the issuer (started before
// any of them) comes first.
func (s *Sigstore) daemons() []*daemon { return []*daemon{s.fulcio, s.tsa, s.rekor} }

// startSigstore starts the issuer, Fulcio, the TSA and Rekor v2 under dir,
// and writes the trusted root and signing configs.
func startSigstore(ctx context.Context, tools, dir string, held *MachineLocks) (s *Sigstore, err error) {
	for _, b := range []string{"fulcio", "timestamp-server", "rekor-server"} {
		if _, err := os.Stat(filepath.Join(tools, b)); err != nil {
			return nil, fmt.Errorf("%s missing from IDOPIPE_TOOLS_BIN=%s: run `make tools`", b, tools)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s = &Sigstore{dir: dir, tools: tools}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if s.Issuer, err = startIssuer(); err != nil {
		return s, err
	}
	s.IssuerURL = s.Issuer.URL
	if err := waitUntil(ctx, 5*time.Second, s.Issuer.check); err != nil {
		return s, fmt.Errorf("the OIDC issuer: %w", err)
	}
	if s.fulcio, err = newFulcio(tools, filepath.Join(dir, "fulcio"), s.IssuerURL); err != nil {
		return s, err
	}
	if s.tsa, err = newTSA(tools, filepath.Join(dir, "tsa")); err != nil {
		return s, err
	}
	if s.rekor, err = newRekor(tools, filepath.Join(dir, "rekor")); err != nil {
		return s, err
	}
	// One timestamp authority per machine (its metrics port, 2112, is
	// fixed): hold the machine's TSA lock for the life of this instance;
	// the TSA process holds it too, so one that outlives a killed stack
	// keeps the next one waiting until it is gone.
	if s.tsaLock, err = held.take(ctx, tsaLock); err != nil {
		return s, err
	}
	s.tsa.extra = []*os.File{s.tsaLock}
	for _, d := range s.daemons() {
		if err := d.start(ctx, true); err != nil {
			return s, err
		}
	}
	// The TSA's URL is its timestamp endpoint, as signing configs and
	// cosign's --timestamp-server-url name it; Fulcio's and Rekor's are
	// their base URLs.
	s.FulcioURL, s.TSAURL, s.RekorURL = s.fulcio.url(), s.tsa.url()+"/api/v1/timestamp", s.rekor.url()
	if err := s.writeTrust(); err != nil {
		return s, err
	}
	return s, nil
}

// tsaLock is the machine's timestamp-authority lock (see startSigstore).
const tsaLock = "/run/idopipe-tsa.lock"

// Stop ends the servers and the issuer; safe to call twice.
func (s *Sigstore) Stop() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ds := s.daemons()
	for i := len(ds) - 1; i >= 0; i-- {
		ds[i].stop()
	}
	s.Issuer.Stop()
	if s.tsaLock != nil {
		s.tsaLock.Close()
		s.tsaLock = nil
	}
}

// StopFulcio, StopTSA and StopRekor end one server (its URL then refuses
// connections); StartFulcio, StartTSA and StartRekor start it again on the
// same port with the same keys and state. For the "service down while
// signing" tests.
func (s *Sigstore) StopFulcio() { s.fulcio.stop() }

// StopTSA ends the timestamp authority; see StopFulcio.
func (s *Sigstore) StopTSA() { s.tsa.stop() }

// StopRekor ends Rekor; see StopFulcio.
func (s *Sigstore) StopRekor() { s.rekor.stop() }

// StartFulcio starts Fulcio again after StopFulcio.
func (s *Sigstore) StartFulcio(ctx context.Context) error { return s.fulcio.start(ctx, false) }

// StartTSA starts the timestamp authority again after StopTSA.
func (s *Sigstore) StartTSA(ctx context.Context) error { return s.tsa.start(ctx, false) }

// StartRekor starts Rekor again after StopRekor.
func (s *Sigstore) StartRekor(ctx context.Context) error { return s.rekor.start(ctx, false) }

// Token is an RS256 ID token of the stack's issuer for c (aud sigstore
// unless c says otherwise), with every claim GitHub's carry.
func (s *Sigstore) Token(c GitHubClaims) (string, error) { return s.Issuer.Token(c) }

// ActionsRequest is the runner's ACTIONS_ID_TOKEN_REQUEST_URL and
// ACTIONS_ID_TOKEN_REQUEST_TOKEN pair whose tokens carry c.
func (s *Sigstore) ActionsRequest(c GitHubClaims) (url, requestToken string) {
	return s.Issuer.ActionsRequest(c)
}

// Env is the instance for a command's environment.
func (s *Sigstore) Env() []string {
	return []string{
		"IDOPIPE_TEST_FULCIO_URL=" + s.FulcioURL,
		"IDOPIPE_TEST_TSA_URL=" + s.TSAURL,
		"IDOPIPE_TEST_REKOR_URL=" + s.RekorURL,
		"IDOPIPE_TEST_TRUSTED_ROOT=" + s.TrustedRoot,
		"IDOPIPE_TEST_TRUSTED_ROOT_NO_LOG=" + s.TrustedRootNoLog,
		"IDOPIPE_TEST_SIGNING_CONFIG=" + s.SigningConfig,
		"IDOPIPE_TEST_SIGNING_CONFIG_NO_LOG=" + s.SigningConfigNoLog,
		"IDOPIPE_TEST_OIDC_ISSUER=" + s.IssuerURL,
	}
}

// writeTrust writes the trusted roots and signing configs from the keys
// and certificates the servers were started with.
func (s *Sigstore) writeTrust() error {
	fca, err := s.fulcio.pki.fulcioCA(s.FulcioURL)
	if err != nil {
		return err
	}
	tsa, err := s.tsa.pki.timestampingAuthority(s.TSAURL)
	if err != nil {
		return err
	}
	tlog, err := s.rekor.pki.transparencyLog(s.RekorURL)
	if err != nil {
		return err
	}
	logs := map[string]*root.TransparencyLog{fmt.Sprintf("%x", tlog.ID): tlog}
	s.TrustedRoot = filepath.Join(s.dir, "trusted_root.json")
	if err := writeTrustedRoot(s.TrustedRoot, fca, tsa, logs); err != nil {
		return err
	}
	s.TrustedRootNoLog = filepath.Join(s.dir, "trusted_root_nolog.json")
	if err := writeTrustedRoot(s.TrustedRootNoLog, fca, tsa, nil); err != nil {
		return err
	}
	start := fca.ValidityPeriodStart
	svc := func(url string, v uint32) root.Service {
		return root.Service{URL: url, MajorAPIVersion: v, ValidityPeriodStart: start, Operator: "idopipe-test"}
	}
	anyOne := root.ServiceConfiguration{Selector: prototrustroot.ServiceSelector_ANY}
	s.SigningConfig = filepath.Join(s.dir, "signing_config.json")
	if err := writeSigningConfig(s.SigningConfig, svc(s.FulcioURL, 1), svc(s.IssuerURL, 1), []root.Service{svc(s.RekorURL, 2)}, svc(s.TSAURL, 1), anyOne); err != nil {
		return err
	}
	s.SigningConfigNoLog = filepath.Join(s.dir, "signing_config_nolog.json")
	return writeSigningConfig(s.SigningConfigNoLog, svc(s.FulcioURL, 1), svc(s.IssuerURL, 1), nil, svc(s.TSAURL, 1), anyOne)
}

// writeTrustedRoot writes one line of JSON and a newline: gh reads
// --custom-trusted-root as JSON lines, and takes a line only with its
// newline.
func writeTrustedRoot(path string, ca *root.FulcioCertificateAuthority, tsa *root.SigstoreTimestampingAuthority, logs map[string]*root.TransparencyLog) error {
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, []root.CertificateAuthority{ca}, nil, []root.TimestampingAuthority{tsa}, logs)
	if err != nil {
		return err
	}
	b, err := tr.MarshalJSON()
	if err != nil {
		return err
	}
	if _, err := root.NewTrustedRootFromJSON(b); err != nil {
		return fmt.Errorf("the stack's trusted root does not read back: %w", err)
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func writeSigningConfig(path string, fulcio, oidc root.Service, rekor []root.Service, tsa root.Service, cfg root.ServiceConfiguration) error {
	sc, err := root.NewSigningConfig(root.SigningConfigMediaType02, []root.Service{fulcio}, []root.Service{oidc}, rekor, cfg, []root.Service{tsa}, cfg)
	if err != nil {
		return err
	}
	b, err := sc.MarshalJSON()
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// logID is a Rekor v2 log's ID for an ECDSA key: SHA-256 of its PKIX DER
// (rekor-tiles pkg/note KeyHash), which its entries carry as logId.keyId.
func logID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return sum[:], nil
}

// waitUntil polls check until it succeeds or timeout.
func waitUntil(ctx context.Context, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s: %w", timeout, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// addressInUse tells whether a server's log says its port was taken (the
// window between freePort and the server's bind).
func addressInUse(log string) bool {
	return strings.Contains(log, "address already in use")
}
