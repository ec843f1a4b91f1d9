package build

import (
	"slices"
	"strings"

	"github.com/containerd/platforms"

	"github.com/idopipe/idopipe/pkg/fail"
)

// Operating systems and architectures an image platform may name: Go's
// ports that container images exist for. containerd's parser accepts any
// word, so a typo (linux/amd65) would otherwise reach the daemon.
var (
	knownOS   = []string{"linux", "windows", "freebsd", "darwin"}
	knownArch = []string{"amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64", "mips64le", "mips64", "loong64"}
)

const platformFix = "use --platform OS/ARCH[/VARIANT], comma-separated, e.g. linux/amd64,linux/arm64"

// ParsePlatforms checks and normalises platform strings (each may itself be
// a comma-separated list) and returns them in containerd's form, without
// duplicates, in the order given.
func ParsePlatforms(in []string) ([]string, error) {
	var out []string
	for _, item := range in {
		for s := range strings.SplitSeq(item, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			p, err := platforms.Parse(s)
			if err != nil {
				return nil, fail.Wrap(fail.Usage, err, platformFix, "unknown platform %q", s)
			}
			if !strings.Contains(s, "/") {
				return nil, fail.New(fail.Usage, platformFix, "unknown platform %q: name both OS and architecture", s)
			}
			if !slices.Contains(knownOS, p.OS) {
				return nil, fail.New(fail.Usage, platformFix, "unknown platform %q: OS %q is not one of %s", s, p.OS, strings.Join(knownOS, ", "))
			}
			if !slices.Contains(knownArch, p.Architecture) {
				return nil, fail.New(fail.Usage, platformFix, "unknown platform %q: architecture %q is not one of %s", s, p.Architecture, strings.Join(knownArch, ", "))
			}
			f := platforms.Format(platforms.Normalize(p))
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	return out, nil
}
