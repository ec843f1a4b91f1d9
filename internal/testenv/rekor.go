package testenv

import (
	"crypto"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
)

// newRekor prepares Rekor v2 (rekor-tiles v2.3.0, POSIX storage) with a
// P-256 checkpoint key made here. Its origin is 127.0.0.1: verifiers
// (sigstore-go) check a v2 checkpoint against the host name of the log's
// URL in the trusted root. Checkpoints every 500 ms (Tessera's default is
// 10 s, which a signer waits for) .
func newRekor(tools, dir string) (*daemon, error) {
	keyPath, storage := filepath.Join(dir, "signer-key.pem"), filepath.Join(dir, "storage")
	key, err := newKey(keyPath)
	if err != nil {
		return nil, err
	}
	return &daemon{
		name: "rekor-server", bin: filepath.Join(tools, "rekor-server"), dir: dir, nports: 3,
		args: func(p []int) []string {
			return []string{"serve", "--log-level=warn",
				"--http-address=127.0.0.1", "--http-port=" + strconv.Itoa(p[0]),
				"--grpc-address=127.0.0.1", "--grpc-port=" + strconv.Itoa(p[1]),
				"--http-metrics-port=" + strconv.Itoa(p[2]),
				"--hostname=127.0.0.1", "--storage-dir=" + storage, "--signer-filepath=" + keyPath,
				"--checkpoint-interval=500ms", "--batch-max-age=50ms"}
		},
		readyPath: "/healthz",
		pki:       &keys{pub: key.Public(), created: time.Now().Add(-time.Minute).Truncate(time.Second)},
	}, nil
}

// transparencyLog is Rekor for the trusted root.
func (k *keys) transparencyLog(url string) (*root.TransparencyLog, error) {
	id, err := logID(k.pub)
	if err != nil {
		return nil, err
	}
	return &root.TransparencyLog{
		BaseURL: url, ID: id, ValidityPeriodStart: k.created,
		HashFunc: crypto.SHA256, PublicKey: k.pub, SignatureHashFunc: crypto.SHA256,
	}, nil
}
