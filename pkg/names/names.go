// Package names holds the rules for every name idopipe writes somewhere:
// image tags, registry owners and image names, Kubernetes namespaces,
// Secret names and label values. Each check returns a usage error that
// states the rule and gives an example, so that a bad name is refused
// before any build, push or write instead of by the registry or the API
// server halfway through a release. Each check takes what the value is
// (a flag such as --version where the caller knows it) to name in the
// message.
package names

import (
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/idopipe/idopipe/pkg/fail"
)

// tagRule is the OCI distribution spec's tag grammar.
var tagRule = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// Tag checks an image tag (a --version or an extra tag).
func Tag(what, v string) error {
	if tagRule.MatchString(v) {
		return nil
	}
	example := "0.4.0"
	if strings.ContainsRune(v, '+') {
		// SemVer build metadata: the registry cannot store '+'.
		example = strings.ReplaceAll(v, "+", "-")
	}
	return fail.New(fail.Usage, "use a tag such as "+example,
		"%s %q is not a valid image tag: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", what, v)
}

// pathComponent is the OCI distribution spec's rule for one repository
// path component.
var pathComponent = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$`)

// ImageName checks an image name (one repository path component, as
// idopipe pushes OWNER/NAME).
func ImageName(what, v string) error {
	if pathComponent.MatchString(v) {
		return nil
	}
	return fail.New(fail.Usage, "use lowercase letters and digits joined by '.', '_' or '-', e.g. planner",
		"%s %q is not a valid image name", what, v)
}

// githubLogin is GitHub's rule for user and organisation names: letters,
// digits and single hyphens, not at either end, at most 39 characters.
var githubLogin = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9]|-[A-Za-z0-9]){0,38}$`)

// IsGHCR tells whether host is GitHub's container registry.
func IsGHCR(host string) bool { return strings.EqualFold(host, "ghcr.io") }

// Owner checks a registry owner. On ghcr.io the owner is a GitHub user or
// organisation, so GitHub's rule applies (My_Org would be pushed as my_org,
// which no account can own); elsewhere the lowercased owner must be a valid
// repository path component.
func Owner(what, registryHost, v string) error {
	if v == "" {
		return nil // "no owner" is the caller's own message
	}
	if IsGHCR(registryHost) {
		if len(v) <= 39 && githubLogin.MatchString(v) {
			return nil
		}
		return fail.New(fail.Usage, "use the GitHub user or organisation exactly as GitHub spells it, e.g. my-org",
			"%s %q is no GitHub user or organisation name: letters, digits and single inner hyphens, at most 39 characters", what, v)
	}
	if pathComponent.MatchString(strings.ToLower(v)) {
		return nil
	}
	return fail.New(fail.Usage, "use letters and digits joined by '.', '_' or '-', e.g. my-org",
		"%s %q is not a valid registry owner (lowercased, it must be a repository path component)", what, v)
}

// Namespace checks a Kubernetes namespace name (an RFC 1123 label).
func Namespace(what, v string) error {
	if errs := validation.IsDNS1123Label(v); len(errs) > 0 {
		return fail.New(fail.Usage, "use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters, e.g. ido",
			"%s %q is not a valid namespace name", what, v)
	}
	return nil
}

// SecretName checks the name of a Secret (an RFC 1123 subdomain).
func SecretName(what, v string) error {
	if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
		return fail.New(fail.Usage, "use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, e.g. ghcr-secret",
			"%s %q is not a valid Secret name", what, v)
	}
	return nil
}

// LabelValue checks a value idopipe writes as a Kubernetes label.
func LabelValue(what, v string) error {
	if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
		return fail.New(fail.Usage, "use at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit, e.g. planner-0.4.0",
			"%s %q is not a valid label value", what, v)
	}
	return nil
}
