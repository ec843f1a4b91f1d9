package sign

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/idopipe/idopipe/pkg/fail"
)

// GitHubIssuer is the OIDC issuer of GitHub Actions' tokens: what a
// certificate identity requires when it names no issuer (as gh does).
const GitHubIssuer = "https://token.actions.githubusercontent.com"

// githubURL is where GitHub names repositories, owners and workflows in the
// certificates Fulcio issues for GitHub Actions tokens.
const githubURL = "https://github.com/"

// Policy is what verification accepts: a signature by any of Keys, or a
// certificate matching Identity chained to Trust. Either, or both.
type Policy struct {
	Keys     []Key
	Identity *Identity            // nil: no certificate accepted
	Trust    root.TrustedMaterial // sigstore-go trusted root; required when Identity != nil
}

// Empty tells a policy that accepts nothing: no key, no identity.
func (p Policy) Empty() bool { return len(p.Keys) == 0 && p.Identity == nil }

// String says what is required, in one phrase: "key cosign.pub (sha256:…)",
// "a certificate for SAN ~ ^https://github.com/o/r/ issued by https://…",
// or both joined by "or".
func (p Policy) String() string {
	var parts []string
	switch len(p.Keys) {
	case 0:
	case 1:
		parts = append(parts, "key "+p.Keys[0].String())
	default:
		parts = append(parts, "one of keys "+Keys(p.Keys))
	}
	if p.Identity != nil {
		parts = append(parts, p.Identity.String())
	}
	if len(parts) == 0 {
		return "nothing (no key, no certificate identity)"
	}
	return strings.Join(parts, " or ")
}

// Identity is who must have signed, in cosign's and gh's ways of naming
// it: the certificate's OIDC issuer and SAN (cosign verify
// --certificate-oidc-issuer[-regexp], --certificate-identity[-regexp]),
// or the GitHub owner, repository and workflow (gh attestation verify
// --owner, --repo, --signer-workflow), which name the SAN and the
// certificate's source repository extensions as gh does.
type Identity struct {
	Issuer, IssuerRegexp   string // certificate OIDC issuer; both empty: GitHubIssuer
	Subject, SubjectRegexp string // certificate SAN, exact or a regexp
	// Owner requires the certificate's source repository owner to be
	// https://github.com/OWNER (and, without a SAN or workflow, the SAN to
	// start with it); Repo (OWNER/NAME) the source repository; and
	// SignerWorkflow (OWNER/NAME/.github/workflows/FILE, optionally with a
	// host in front) the SAN's start.
	Owner, Repo, SignerWorkflow string
}

// Validate refuses an identity that names no signer, two ways of naming
// the same thing, or a regexp that does not compile (fail.Usage).
func (i Identity) Validate() error {
	bad := func(format string, args ...any) error {
		return fail.New(fail.Usage, "", "certificate identity: "+format, args...)
	}
	if i.Subject == "" && i.SubjectRegexp == "" && i.Owner == "" && i.Repo == "" && i.SignerWorkflow == "" {
		return fail.New(fail.Usage, "give the SAN (exact or a regexp), or the GitHub owner, repository or workflow that must have signed",
			"certificate identity names no signer")
	}
	if i.Subject != "" && i.SubjectRegexp != "" {
		return bad("give the SAN exactly or as a regexp, not both")
	}
	if i.Issuer != "" && i.IssuerRegexp != "" {
		return bad("give the issuer exactly or as a regexp, not both")
	}
	for what, re := range map[string]string{"SAN": i.SubjectRegexp, "issuer": i.IssuerRegexp} {
		if re == "" {
			continue
		}
		if _, err := regexp.Compile(re); err != nil {
			return bad("the %s regexp %q does not compile: %v", what, re, err)
		}
	}
	if i.Repo != "" {
		owner, name, ok := strings.Cut(i.Repo, "/")
		if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
			return bad("repository %q is not OWNER/NAME", i.Repo)
		}
		if i.Owner != "" && !strings.EqualFold(owner, i.Owner) {
			return bad("repository %s is not the owner %s's", i.Repo, i.Owner)
		}
	}
	if i.Owner != "" && strings.Contains(i.Owner, "/") {
		return bad("owner %q is not a GitHub user or organization name", i.Owner)
	}
	if i.SignerWorkflow != "" && strings.Count(strings.TrimPrefix(i.SignerWorkflow, "https://"), "/") < 2 {
		return bad("signer workflow %q is not OWNER/NAME/.github/workflows/FILE", i.SignerWorkflow)
	}
	if _, err := i.san(); err != nil {
		return bad("%v", err)
	}
	return nil
}

// owner is the GitHub owner the identity requires, "" for none.
func (i Identity) owner() string {
	if i.Owner != "" {
		return i.Owner
	}
	o, _, _ := strings.Cut(i.Repo, "/")
	return o
}

// san is the SAN matcher: the exact SAN or a regexp, as gh derives it
// when the SAN is not given: from the workflow, else the repository, else
// the owner.
func (i Identity) san() (verify.SubjectAlternativeNameMatcher, error) {
	exact, re := i.sanParts()
	return verify.NewSANMatcher(exact, re)
}

func (i Identity) sanParts() (exact, re string) {
	switch {
	case i.Subject != "" || i.SubjectRegexp != "":
		return i.Subject, i.SubjectRegexp
	case i.SignerWorkflow != "":
		w := strings.TrimPrefix(i.SignerWorkflow, "https://")
		if !strings.HasPrefix(w, "github.com/") && !looksLikeHost(w) {
			w = "github.com/" + w
		}
		return "", "^https://" + w
	case i.Repo != "":
		return "", "(?i)^" + githubURL + i.Repo + "/"
	default:
		return "", "(?i)^" + githubURL + i.Owner + "/"
	}
}

// looksLikeHost tells a workflow given with its host (ghe.example.com/o/r/…):
// its first element has a dot, as gh tells it.
func looksLikeHost(w string) bool {
	first, _, _ := strings.Cut(w, "/")
	return strings.Contains(first, ".")
}

func (i Identity) issuer() (exact, re string) {
	if i.Issuer == "" && i.IssuerRegexp == "" {
		return GitHubIssuer, ""
	}
	return i.Issuer, i.IssuerRegexp
}

// certificateIdentity is the identity as sigstore-go checks it (SAN and
// issuer); the GitHub owner and repository are checked by checkExtensions.
func (i Identity) certificateIdentity() (verify.CertificateIdentity, error) {
	san, err := i.san()
	if err != nil {
		return verify.CertificateIdentity{}, err
	}
	exact, re := i.issuer()
	iss, err := verify.NewIssuerMatcher(exact, re)
	if err != nil {
		return verify.CertificateIdentity{}, err
	}
	return verify.NewCertificateIdentity(san, iss, certificate.Extensions{})
}

// checkExtensions requires the certificate's source repository (owner) to
// be the one the identity names, compared as gh compares them (case
// folded).
func (i Identity) checkExtensions(s certificate.Summary) error {
	if o := i.owner(); o != "" && !strings.EqualFold(s.SourceRepositoryOwnerURI, githubURL+o) {
		return fmt.Errorf("source repository owner %s, not %s", orNone(s.SourceRepositoryOwnerURI), githubURL+o)
	}
	if i.Repo != "" && !strings.EqualFold(s.SourceRepositoryURI, githubURL+i.Repo) {
		return fmt.Errorf("source repository %s, not %s", orNone(s.SourceRepositoryURI), githubURL+i.Repo)
	}
	return nil
}

// String is the identity as messages name it: "a certificate for SAN ~
// ^https://github.com/o/r/ issued by https://token.actions.githubusercontent.com".
func (i Identity) String() string {
	exact, re := i.sanParts()
	s := "a certificate for SAN "
	if exact != "" {
		s += exact
	} else {
		s += "~ " + re
	}
	iss, issRe := i.issuer()
	if iss != "" {
		s += " issued by " + iss
	} else {
		s += " issued by ~ " + issRe
	}
	if i.Repo != "" {
		s += " from repository " + githubURL + i.Repo
	} else if o := i.owner(); o != "" {
		s += " from owner " + githubURL + o
	}
	return s
}

// LoadTrustedRoot reads a Sigstore trusted_root.json (as cosign's
// --trusted-root and gh's --custom-trusted-root take it): the Fulcio CA,
// timestamp authorities, Rekor and CT log keys to verify with.
func LoadTrustedRoot(path string) (root.TrustedMaterial, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fail.Wrap(fail.Usage, errors.Unwrap(err), "check the trusted root's path", "cannot read trusted root %s", path)
	}
	tr, err := root.NewTrustedRootFromJSON(b)
	if err != nil {
		return nil, fail.Wrap(fail.Usage, err, "give a Sigstore trusted_root.json (cosign trusted-root create writes one)", "trusted root %s is invalid", path)
	}
	return tr, nil
}
