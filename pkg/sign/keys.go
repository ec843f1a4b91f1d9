package sign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/idopipe/idopipe/pkg/fail"
)

// Signature is what a Signer made of one payload.
type Signature struct {
	Sig []byte // the raw signature
	// Cert and Chain are a keyless signer's PEM certificate and chain
	// (Fulcio); a key signer leaves them empty.
	Cert, Chain []byte
}

// Signer signs payloads. A key pair (LoadSigner) is one; a keyless signer
// that gets a short-lived certificate for an OIDC token would be another.
type Signer interface {
	Sign(ctx context.Context, payload []byte) (Signature, error)
	// Key is the public key that checks this signer's signatures: Image
	// uses it to find the signatures it made in an earlier run.
	Key() Key
}

// Key is a public key that signatures are checked against.
type Key struct {
	Name string // where it came from (a file name), for messages
	ID   string // sha256: and the first 12 hex digits of the DER public key's digest
	v    signature.Verifier
}

// String is the key as messages name it: file (sha256:…).
func (k Key) String() string { return k.Name + " (" + k.ID + ")" }

// check verifies sig over payload.
func (k Key) check(sig, payload []byte) error {
	return k.v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(payload))
}

// Keys names keys for a message: "a.pub (sha256:…), b.pub (sha256:…)".
func Keys(keys []Key) string {
	var s []string
	for _, k := range keys {
		s = append(s, k.String())
	}
	return strings.Join(s, ", ")
}

// NewKey makes a Key of a public key; name says where it came from.
func NewKey(name string, pub crypto.PublicKey) (Key, error) {
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return Key{}, err
	}
	// The verifier cosign picks for a key: SHA-256 for P-256 and RSA,
	// SHA-384 for P-384, SHA-512 for P-521, Ed25519 as is.
	v, err := signature.LoadDefaultVerifier(pub)
	if err != nil {
		return Key{}, err
	}
	sum := sha256.Sum256(der)
	return Key{Name: name, ID: "sha256:" + hex.EncodeToString(sum[:6]), v: v}, nil
}

// LoadKey reads a PEM public key (cosign.pub).
func LoadKey(path string) (Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fail.Wrap(fail.Usage, errors.Unwrap(err), "check the key path (the public key, e.g. cosign.pub)", "cannot read public key %s", path)
	}
	if blk, _ := pem.Decode(b); blk != nil && strings.Contains(blk.Type, "PRIVATE KEY") {
		return Key{}, fail.New(fail.Usage, "pass the public key (cosign.pub), never the private key", "%s is a private key", path)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(b)
	if err != nil {
		return Key{}, fail.New(fail.Usage, "pass a PEM public key such as cosign.pub (`idopipe keys generate` writes one)", "%s is not a PEM public key", path)
	}
	k, err := NewKey(path, pub)
	if err != nil {
		return Key{}, fail.Wrap(fail.Usage, err, "use an ECDSA, RSA or Ed25519 key", "public key %s", path)
	}
	return k, nil
}

// LoadKeys reads each public key file.
func LoadKeys(paths []string) ([]Key, error) {
	var keys []Key
	for _, p := range paths {
		k, err := LoadKey(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// keySigner signs with a private key held in memory.
type keySigner struct {
	sv  signature.SignerVerifier
	key Key
}

func (s keySigner) Sign(_ context.Context, payload []byte) (Signature, error) {
	sig, err := s.sv.SignMessage(bytes.NewReader(payload))
	if err != nil {
		return Signature{}, err
	}
	return Signature{Sig: sig}, nil
}

func (s keySigner) Key() Key { return s.key }

// LoadSigner reads a private key: cosign's encrypted key file (cosign.key,
// decrypted with password), or an unencrypted PEM private key (PKCS#8, EC
// or RSA). password may be nil when there is none; it is asked for only
// when the file is encrypted.
func LoadSigner(path string, password func() ([]byte, error)) (Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fail.Wrap(fail.Usage, errors.Unwrap(err), "check --key (a private key such as cosign.key; `idopipe keys generate` writes one)", "cannot read signing key %s", path)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fail.New(fail.Usage, "pass cosign.key or a PEM private key", "signing key %s is not PEM", path)
	}
	if blk.Type == "PUBLIC KEY" {
		return nil, fail.New(fail.Usage, "pass the private key (cosign.key) to sign; the .pub file is for verifying", "%s is a public key", path)
	}
	encrypted := strings.HasPrefix(blk.Type, "ENCRYPTED") || blk.Headers["Proc-Type"] != ""
	pf := cryptoutils.PassFunc(func(bool) ([]byte, error) { return []byte{}, nil })
	if encrypted && password != nil {
		pf = func(bool) ([]byte, error) { return password() }
	}
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(b, pf)
	if err != nil {
		if encrypted {
			return nil, fail.New(fail.Usage, "set $COSIGN_PASSWORD or --key-password-file to the key's password", "cannot decrypt signing key %s: wrong or missing password", path)
		}
		return nil, fail.New(fail.Usage, "pass cosign.key or a PEM private key (PKCS#8, EC or RSA)", "cannot read signing key %s: %v", path, err)
	}
	sv, err := signature.LoadDefaultSignerVerifier(priv)
	if err != nil {
		return nil, fail.Wrap(fail.Usage, err, "use an ECDSA, RSA or Ed25519 key", "signing key %s", path)
	}
	pub, err := sv.PublicKey()
	if err != nil {
		return nil, fail.Wrap(fail.Internal, err, "", "signing key %s", path)
	}
	key, err := NewKey(path, pub)
	if err != nil {
		return nil, fail.Wrap(fail.Usage, err, "use an ECDSA, RSA or Ed25519 key", "signing key %s", path)
	}
	return keySigner{sv: sv, key: key}, nil
}

// Generate writes a cosign-compatible key pair into dir: cosign.key (an
// ECDSA P-256 key, encrypted with password as cosign does, mode 0600) and
// cosign.pub. It refuses to overwrite existing files unless force.
func Generate(dir string, password []byte, force bool) (priv, pub string, err error) {
	if len(password) == 0 {
		return "", "", fail.New(fail.Usage, "set $COSIGN_PASSWORD or pass --password-file FILE", "no password to encrypt the private key with")
	}
	priv, pub = filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	if !force {
		for _, p := range []string{priv, pub} {
			if _, err := os.Stat(p); err == nil {
				return "", "", fail.New(fail.Usage, "pass --force to replace it, or --output-dir for another place", "%s exists", p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return "", "", fail.Wrap(fail.Usage, errors.Unwrap(err), "", "cannot check %s", p)
			}
		}
	}
	privPEM, pubPEM, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.StaticPasswordFunc(password))
	if err != nil {
		return "", "", fail.Wrap(fail.Internal, err, "", "cannot generate a key pair")
	}
	if err := writeFile(priv, privPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeFile(pub, pubPEM, 0o644); err != nil {
		return "", "", err
	}
	return priv, pub, nil
}

// writeFile writes b to path through a temporary file in the same
// directory, so no half-written key is ever left at path.
func writeFile(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".idopipe-key-")
	if err != nil {
		return fail.Wrap(fail.Usage, errors.Unwrap(err), "check --output-dir", "cannot write %s", path)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fail.Wrap(fail.Usage, err, "", "cannot write %s", path)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fail.Wrap(fail.Usage, err, "", "cannot write %s", path)
	}
	if err := tmp.Close(); err != nil {
		return fail.Wrap(fail.Usage, err, "", "cannot write %s", path)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fail.Wrap(fail.Usage, errors.Unwrap(err), "", "cannot write %s", path)
	}
	return nil
}

// ReadPassword is the key password: the contents of file (without a
// trailing newline) when file is set, else envPassword (the value of
// $COSIGN_PASSWORD); nil when neither is set.
func ReadPassword(file, envPassword string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fail.Wrap(fail.Usage, errors.Unwrap(err), "check the password file path", "cannot read password file %s", file)
		}
		return bytes.TrimRight(b, "\r\n"), nil
	}
	if envPassword != "" {
		return []byte(envPassword), nil
	}
	return nil, nil
}
