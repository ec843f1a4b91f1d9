package cluster

import "testing"

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
