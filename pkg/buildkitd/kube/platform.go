package kube

import (
	"maps"
	"slices"
	"strings"

	"github.com/containerd/platforms"

	"github.com/idopipe/idopipe/pkg/fail"
)

// A builder created with platforms is a set of builders, one per platform,
// as buildx's kubernetes driver makes with one node per platform: builder
// NAME's builder for linux/arm64 is NAME-linux-arm64, on nodes labelled
// kubernetes.io/os=linux and kubernetes.io/arch=arm64, its buildkitd
// with that platform as its worker's (--oci-worker-platform). Its objects and
// Pods carry LabelSet=NAME and LabelPlatform, and its Pods
// AnnotationPlatform (the platform as written), which is how a build finds
// them with nothing more than list on pods.
const (
	LabelSet           = "idopipe.dev/builder"
	LabelPlatform      = "idopipe.dev/platform"
	AnnotationPlatform = "idopipe.dev/platform"
)

// The well-known node labels of a node's OS and architecture. There is
// none for the variant (arm/v7): a node selector of a variant needs a
// label of the cluster's own.
const (
	nodeOS   = "kubernetes.io/os"
	nodeArch = "kubernetes.io/arch"
)

// PlatformName is the name of builder name's builder for platform p
// (os/arch[/variant]): NAME-OS-ARCH[-VARIANT].
func PlatformName(name, p string) string { return name + "-" + platformLabel(p) }

// platformLabel is platform p as a label value and name suffix: linux-arm-v7.
func platformLabel(p string) string { return strings.ReplaceAll(p, "/", "-") }

// NormalizePlatform is p in containerd's normal form (linux/arm64 for
// linux/arm64/v8), how builders and builds compare platforms.
func NormalizePlatform(p string) (string, error) {
	spec, err := platforms.Parse(p)
	if err != nil || !strings.Contains(p, "/") {
		return "", fail.New(fail.Usage, "use OS/ARCH[/VARIANT], e.g. linux/arm64", "platform %q is not OS/ARCH[/VARIANT]", p)
	}
	return platforms.Format(platforms.Normalize(spec)), nil
}

// PlatformNodeSelector is the default node selector of platform p's
// builder: the nodes of its OS and architecture.
func PlatformNodeSelector(p string) map[string]string {
	spec, err := platforms.Parse(p)
	if err != nil {
		return nil
	}
	return map[string]string{nodeOS: spec.OS, nodeArch: spec.Architecture}
}

// validatePlatforms checks c.Platforms (normal form, no duplicate) and that
// every PlatformNodeSelectors entry is for one of them.
func (c Config) validatePlatforms() error {
	seen := map[string]bool{}
	for _, p := range c.Platforms {
		n, err := NormalizePlatform(p)
		if err != nil {
			return err
		}
		if n != p {
			return fail.New(fail.Usage, "write it "+n, "platform %q is not in normal form", p)
		}
		if seen[p] {
			return fail.New(fail.Usage, "name each platform once", "platform %s is given twice", p)
		}
		seen[p] = true
		if m := PlatformName(c.Name, p); len(m) > 52 {
			return fail.New(fail.Usage, "use a shorter builder name", "builder name %q for platform %s is %d characters, more than 52", m, p, len(m))
		}
	}
	for _, p := range slices.Sorted(maps.Keys(c.PlatformNodeSelectors)) {
		if !seen[p] {
			return fail.New(fail.Usage, "give node selectors only for the builder's platforms ("+strings.Join(c.Platforms, ", ")+")",
				"a node selector is given for platform %s, which the builder does not build", p)
		}
	}
	return nil
}

// Members are the builders c makes: one per platform when c has
// Platforms (each named PlatformName, placed on its platform's nodes,
// buildkitd serving that platform), else c itself.
func (c Config) Members() []Config {
	if len(c.Platforms) == 0 {
		return []Config{c}
	}
	out := make([]Config, 0, len(c.Platforms))
	for _, p := range c.Platforms {
		m := c
		m.Platforms, m.PlatformNodeSelectors = nil, nil
		m.Name, m.set, m.platform = PlatformName(c.Name, p), c.Name, p
		sel := PlatformNodeSelector(p)
		if own, ok := c.PlatformNodeSelectors[p]; ok {
			sel = maps.Clone(own)
		}
		m.NodeSelector = map[string]string{}
		maps.Copy(m.NodeSelector, c.NodeSelector)
		maps.Copy(m.NodeSelector, sel)
		m.BuildkitdFlags = append(slices.Clone(c.BuildkitdFlags), "--oci-worker-platform="+p)
		out = append(out, m)
	}
	return out
}
