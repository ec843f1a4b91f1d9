package cluster

import (
	"strings"
	"testing"
)

// TestClassifyPrefersTheMessage: the kubelet's waiting message names this
// pull's cause; an older event of another cause (a 401 met by an earlier
// retry) does not override it, and events still decide when the message
// names none.
func TestClassifyPrefersTheMessage(t *testing.T) {
	for _, tc := range []struct {
		message string
		events  []string
		want    string
	}{
		{`failed to pull and unpack image "docker.io/idopipe/arm64-only:1": no match for platform in manifest: not found`,
			[]string{"Failed: failed to resolve reference: unexpected status 401 Unauthorized"}, "no-matching-platform"},
		{"Back-off pulling image", []string{"Failed: pull access denied, repository does not exist or may require authorization"}, "pull-unauthorized"},
		{"rpc error: manifest unknown", nil, "image-not-found"},
		{"Back-off pulling image", nil, "image-pull"},
	} {
		if got := Classify("ErrImagePull", tc.message, tc.events).Kind; got != tc.want {
			t.Errorf("message %q, events %q: %s, want %s", tc.message, tc.events, got, tc.want)
		}
	}
}

// TestClassifyTokenRefusals: containerd's errors from a registry's token
// endpoint (as the kubelet reports GHCR's 403 to a revoked PAT, and its 401
// to an anonymous pull of a private package) are pull-unauthorized with the
// fix each needs; a token endpoint that is down is not.
func TestClassifyTokenRefusals(t *testing.T) {
	for _, tc := range []struct {
		message, kind, fix string
	}{
		{`failed to pull and unpack image "ghcr.io/o/planner:1": failed to resolve reference "ghcr.io/o/planner:1": failed to authorize: failed to fetch oauth token: unexpected status: 403 Forbidden`,
			"pull-unauthorized", "refused the pull Secret's credentials"},
		{`failed to pull and unpack image "ghcr.io/o/planner:1": failed to resolve reference "ghcr.io/o/planner:1": failed to authorize: failed to fetch anonymous token: unexpected status: 401 Unauthorized`,
			"pull-unauthorized", "pulled without credentials and the package is private"},
		{`failed to resolve reference "ghcr.io/o/planner:1": failed to authorize: failed to fetch oauth token: Post "https://ghcr.io/token": dial tcp 140.82.1.1:443: connect: connection refused`,
			"registry-unreachable", "cannot reach the registry"},
	} {
		c := Classify("ErrImagePull", tc.message, nil)
		if c.Kind != tc.kind || !strings.Contains(c.Fix, tc.fix) || !strings.Contains(c.What, tc.message) {
			t.Errorf("%q: %+v, want %s and %q", tc.message, c, tc.kind, tc.fix)
		}
	}
}
