package options

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
	"os"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/spf13/pflag"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/sign"
)

// SigstoreOptions choose the Sigstore instance that keyless signing uses
// and whose trusted root keyless verification checks against: one group,
// added once to a command that signs, verifies or both, so --trusted-root
// means the same file for both.
type SigstoreOptions struct {
	Name        string
	FulcioURL   string
	RekorURL    string
	TSAURL      string
	TrustedRoot string
	CAFile      string
}

// SigstoreFlags say which of the group's flags a command has.
type SigstoreFlags struct {
	// Signing adds the services' URLs and --sigstore-ca: a command that
	// only verifies has --sigstore and --trusted-root alone.
	Signing bool
}

// AddFlags adds --sigstore and --trusted-root, and for a command that
// signs the service URLs and --sigstore-ca.
func (o *SigstoreOptions) AddFlags(fs *pflag.FlagSet, with SigstoreFlags) {
	fs.StringVar(&o.Name, "sigstore", "public-good", "Sigstore instance: public-good (Fulcio + Rekor, public repositories) or github (GitHub's Fulcio + timestamp authority, private repositories); keyless signing uses its services, keyless verification its trusted root")
	fs.StringVar(&o.TrustedRoot, "trusted-root", "", "Sigstore trusted_root.json: the certificate authorities, timestamp authorities and logs that keyless signatures are checked against (default the --sigstore instance's, fetched through its TUF repository)")
	if !with.Signing {
		return
	}
	fs.StringVar(&o.FulcioURL, "fulcio-url", "", "Fulcio that issues the signing certificate (default the --sigstore instance's)")
	fs.StringVar(&o.RekorURL, "rekor-url", "", "Rekor v2 (tile log) that records the signature (default the --sigstore instance's log; \"none\" records none)")
	fs.StringVar(&o.TSAURL, "timestamp-url", "", "RFC 3161 timestamp authority that proves the signing time (default the --sigstore instance's; \"none\" asks none)")
	fs.StringVar(&o.CAFile, "sigstore-ca", "", "PEM file with extra CA certificates for the TLS of the Sigstore services")
}

// Validate checks the instance name, the URLs and the files.
func (o *SigstoreOptions) Validate() error {
	if _, err := o.instance(); err != nil {
		return err
	}
	for _, u := range []struct{ flag, v string }{{"--fulcio-url", o.FulcioURL}, {"--rekor-url", o.RekorURL}, {"--timestamp-url", o.TSAURL}} {
		if u.v == "" || (u.v == "none" && u.flag != "--fulcio-url") {
			continue
		}
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return fail.New(fail.Usage, "give "+u.flag+" as https://HOST[:PORT]", "invalid %s %q", u.flag, u.v)
		}
	}
	if o.TrustedRoot != "" {
		if _, err := sign.LoadTrustedRoot(o.TrustedRoot); err != nil {
			return err
		}
	}
	if o.CAFile != "" {
		if _, err := o.pool(); err != nil {
			return err
		}
	}
	return nil
}

// custom says whether a service URL was given: the instance's own trusted
// root then cannot vouch for it, so --trusted-root is required.
func (o *SigstoreOptions) custom() bool {
	return o.FulcioURL != "" || (o.RekorURL != "" && o.RekorURL != "none") || (o.TSAURL != "" && o.TSAURL != "none")
}

// instance is the chosen instance with the URL flags applied.
func (o *SigstoreOptions) instance() (sign.Instance, error) {
	inst, err := sign.KnownInstance(o.Name)
	if err != nil {
		return inst, err
	}
	if o.FulcioURL != "" {
		inst.FulcioURL = o.FulcioURL
	}
	switch o.RekorURL {
	case "":
	case "none":
		inst.RekorURL = ""
	default:
		// A log of one's own is Rekor v2 (v1 needs Trillian and a
		// database); public-good's v1 log is the instance default.
		inst.RekorURL, inst.RekorVersion = o.RekorURL, 2
	}
	switch o.TSAURL {
	case "":
	case "none":
		inst.TSAURL = ""
	default:
		inst.TSAURL = o.TSAURL
	}
	if o.custom() {
		inst.Name = "custom"
	}
	inst.TrustedRoot = o.TrustedRoot
	return inst, nil
}

// Instance is the instance keyless signing uses. Services the instance's
// trusted root does not list need --trusted-root, and so does an
// instance whose root idopipe cannot fetch itself (GitHub's).
func (o *SigstoreOptions) Instance() (sign.Instance, error) {
	inst, err := o.instance()
	if err != nil {
		return inst, err
	}
	if inst.RekorURL == "" && inst.TSAURL == "" {
		return inst, fail.New(fail.Usage, "keep a timestamp authority or a Rekor log (drop --rekor-url none or --timestamp-url none)",
			"keyless signing needs a timestamp authority or a transparency log: a certificate lives minutes, only a proven signing time makes it verifiable later")
	}
	if o.TrustedRoot == "" && (o.custom() || inst.Name == "github") {
		return inst, fail.New(fail.Usage, "pass --trusted-root trusted_root.json for these services (gh attestation trusted-root prints GitHub's)",
			"no trusted root for the %s Sigstore instance", inst.Name)
	}
	return inst, nil
}

// Trust is the trusted material keyless verification checks against:
// --trusted-root, or the public-good instance's through its TUF repository.
func (o *SigstoreOptions) Trust() (root.TrustedMaterial, error) {
	if o.TrustedRoot != "" {
		return sign.LoadTrustedRoot(o.TrustedRoot)
	}
	if o.Name != "public-good" {
		return nil, fail.New(fail.Usage, "pass --trusted-root trusted_root.json (gh attestation trusted-root prints GitHub's)",
			"no trusted root to check certificates of the %s Sigstore instance against", o.Name)
	}
	tr, err := root.FetchTrustedRoot()
	if err != nil {
		return nil, fail.Wrap(fail.Sigstore, err, "pass --trusted-root trusted_root.json when the TUF repository cannot be reached",
			"cannot fetch the public-good Sigstore trusted root")
	}
	return tr, nil
}

// HTTPClient is the client for the Sigstore services: the system roots
// plus --sigstore-ca.
func (o *SigstoreOptions) HTTPClient() (*http.Client, error) {
	if o.CAFile == "" {
		return &http.Client{}, nil
	}
	pool, err := o.pool()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}

func (o *SigstoreOptions) pool() (*x509.CertPool, error) {
	b, err := os.ReadFile(o.CAFile)
	if err != nil {
		return nil, fail.New(fail.Usage, "check the --sigstore-ca path", "cannot read --sigstore-ca %s", o.CAFile)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fail.New(fail.Usage, "give --sigstore-ca as PEM certificates", "--sigstore-ca %s holds no PEM certificate", o.CAFile)
	}
	return pool, nil
}
