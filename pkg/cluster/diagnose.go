package cluster

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Cause is a classified reason why a Pod is not Ready.
type Cause struct {
	Kind  string `json:"kind"`  // "pull-unauthorized", "image-not-found", ...
	Fatal bool   `json:"fatal"` // waiting longer will not help
	What  string `json:"what"`  // the observation, e.g. the kubelet's message
	Fix   string `json:"fix"`
}

func (c Cause) String() string {
	return fmt.Sprintf("%s: %s: %s", c.Kind, c.What, c.Fix)
}

// pullRule maps words of an image-pull failure to a cause.
type pullRule struct {
	words []string
	kind  string
	fatal bool
	fix   string
}

var pullRules = []pullRule{
	{[]string{"unauthorized", "401", "authentication required", "denied", "403", "forbidden"}, "pull-unauthorized", true,
		"the pull Secret is missing, wrong or not on the Pod's ServiceAccount: run `idopipe verify-pull IMAGE --as-cluster -n NAMESPACE`"},
	{[]string{"no matching manifest", "no match for platform", "platform"}, "no-matching-platform", true,
		"build for the nodes' platform (verify-pull --platforms-from-cluster shows which)"},
	{[]string{"not found", "manifest unknown", "name unknown", "notfound"}, "image-not-found", true,
		"push the image, or fix the image reference in the manifest"},
	{[]string{"429", "toomanyrequests", "too many requests", "rate limit"}, "registry-rate-limit", false,
		"the registry is rate-limiting pulls; waiting (authenticated pulls get higher limits)"},
	{[]string{"x509", "certificate"}, "registry-tls", true,
		"the nodes do not trust the registry's certificate: install its CA on the nodes"},
	{[]string{"no such host", "dial tcp", "i/o timeout", "connection refused", "network is unreachable"}, "registry-unreachable", false,
		"the nodes cannot reach the registry (DNS or network); waiting"},
}

// tokenRefused reads containerd's errors from a registry's token endpoint
// (GHCR's /token): with the pull Secret's credentials, "failed to fetch oauth
// token: unexpected status: 403 Forbidden" (GHCR's 403 DENIED to a wrong,
// revoked or expired PAT; containerd 1.6 tries an OAuth2 POST first and falls
// back to GET on 405, containerd#4982); without credentials, "failed to fetch
// anonymous token: … 401 Unauthorized" (a private package). A token endpoint
// that is down or answers 5xx is not a refusal.
func tokenRefused(text string) (Cause, bool) {
	refused := func() bool {
		for _, w := range []string{"401", "403", "unauthorized", "forbidden", "denied"} {
			if strings.Contains(text, w) {
				return true
			}
		}
		return false
	}
	switch {
	case strings.Contains(text, "failed to fetch oauth token") && refused():
		return Cause{Kind: "pull-unauthorized", Fatal: true,
			Fix: "the registry's token endpoint refused the pull Secret's credentials: its token is wrong, revoked or expired; deploy again with a valid token (idopipe rewrites the Secret) and check with `idopipe verify-pull IMAGE --as-cluster -n NAMESPACE`"}, true
	case strings.Contains(text, "failed to fetch anonymous token") && refused():
		return Cause{Kind: "pull-unauthorized", Fatal: true,
			Fix: "the kubelet pulled without credentials and the package is private: the Pod needs the pull Secret (on its ServiceAccount), or make the package public"}, true
	}
	return Cause{}, false
}

// Classify names the cause of a container's waiting state, using the
// kubelet's message and the Pod's event messages.
func Classify(reason, message string, events []string) Cause {
	text := strings.ToLower(message + " " + strings.Join(events, " "))
	switch reason {
	case "ErrImagePull", "ImagePullBackOff":
		// The kubelet's message is about this pull; the events may hold
		// older ones (a retry that met another error): the message decides
		// when it names a cause.
		for _, t := range []string{strings.ToLower(message), text} {
			if c, ok := tokenRefused(t); ok {
				c.What = reason + " (" + message + ")"
				return c
			}
			for _, r := range pullRules {
				for _, w := range r.words {
					if strings.Contains(t, w) {
						return Cause{Kind: r.kind, Fatal: r.fatal, What: reason + " (" + message + ")", Fix: r.fix}
					}
				}
			}
		}
		return Cause{Kind: "image-pull", What: reason + " (" + message + ")", Fix: "waiting; see the Pod's events"}
	case "InvalidImageName":
		return Cause{Kind: "invalid-image", Fatal: true, What: message, Fix: "fix the image reference in the manifest"}
	case "CrashLoopBackOff":
		return Cause{Kind: "crash-loop", Fatal: true, What: message, Fix: "the container exits; read its log lines above"}
	case "CreateContainerConfigError", "CreateContainerError":
		if m := strings.ToLower(message); strings.Contains(m, "etc/passwd") || strings.Contains(m, "unable to find user") ||
			strings.Contains(m, "etc/group") || strings.Contains(m, "non-numeric user") {
			return Cause{Kind: "image-user-unresolvable", Fatal: true, What: message,
				Fix: "the image's USER is a name its filesystem cannot resolve (no /etc/passwd, as in FROM scratch): set runAsUser and runAsGroup in the Pod's securityContext, or a numeric USER in the Dockerfile"}
		}
		return Cause{Kind: "container-config", Fatal: true, What: message, Fix: "a ConfigMap, Secret or key the Pod references is missing"}
	}
	return Cause{Kind: "waiting", What: reason + " " + message, Fix: "waiting"}
}

// classifyUnschedulable tells a scheduler verdict that will not change by
// itself (no node matches the Pod's affinity, selector or tolerations) from
// one that may (resources).
func classifyUnschedulable(cond corev1.PodCondition) Cause {
	m := strings.ToLower(cond.Message)
	c := Cause{Kind: "unschedulable", What: cond.Message}
	switch {
	case strings.Contains(m, "insufficient"):
		c.Fix = "no node has the resources the Pod requests now; waiting"
	case strings.Contains(m, "affinity") || strings.Contains(m, "selector") || strings.Contains(m, "taint") || strings.Contains(m, "no nodes available"):
		c.Fatal = true
		c.Fix = "no node matches the Pod's node affinity, selector or tolerations (the IDO Pods need a node labelled node-role.kubernetes.io/control-plane)"
	default:
		c.Fix = "waiting for the scheduler"
	}
	return c
}
