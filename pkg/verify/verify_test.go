package verify

import (
	"context"
	"errors"
	"io/fs"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
	"github.com/idopipe/idopipe/pkg/sign"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestReportString(t *testing.T) {
	for _, tc := range []struct {
		r    Report
		want string
	}{
		{Report{Ref: "ghcr.io/o/planner:1", Digest: digest, Platforms: []string{"linux/amd64", "linux/arm64"}, Visibility: Private},
			"ghcr.io/o/planner:1@" + digest + " pullable, platforms [linux/amd64 linux/arm64]; private: anonymous pulls are refused, so the cluster needs the pull Secret (idopipe creates it), or make the package public in its package settings (Danger Zone, Change visibility)"},
		{Report{Ref: "ghcr.io/o/planner@" + digest, Digest: digest, Platforms: []string{"linux/amd64"}, Visibility: Public, Anonymous: true},
			"ghcr.io/o/planner@" + digest + " pullable, platforms [linux/amd64]; public: anonymous pulls work, the cluster needs no pull Secret"},
		{Report{Ref: "127.0.0.1:5000/o/planner:1", Digest: digest},
			"127.0.0.1:5000/o/planner:1@" + digest + " pullable, platforms []; visibility unknown: the anonymous pull check failed; keep the pull Secret"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("got\n  %s\nwant\n  %s", got, tc.want)
		}
	}
}

func TestOptions(t *testing.T) {
	var o options
	for _, opt := range []Option{WithPlatforms("linux/amd64"), WithFull(), WithPlatforms("linux/arm64", "linux/arm/v7")} {
		opt(&o)
	}
	if !o.full || len(o.platforms) != 3 || o.platforms[2] != "linux/arm/v7" {
		t.Errorf("options %+v", o)
	}
	v := New(registry.Access{}, WithFull())
	if len(v.opts) != 1 {
		t.Errorf("New kept %d options", len(v.opts))
	}
}

func TestHasPlatform(t *testing.T) {
	have := []string{"linux/amd64", "linux/arm64/v8", "linux/arm/v7"}
	for want, ok := range map[string]bool{"linux/amd64": true, "linux/arm64": true, "linux/arm64/v8": true, "linux/arm/v7": true, "linux/arm": true, "linux/s390x": false, "linux/amd": false, "windows/amd64": false} {
		if hasPlatform(have, want) != ok {
			t.Errorf("hasPlatform(%q) = %v", want, !ok)
		}
	}
}

func TestIsAttestation(t *testing.T) {
	for _, tc := range []struct {
		d    v1.Descriptor
		want bool
	}{
		{v1.Descriptor{Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest"}}, true},
		{v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}}, true},
		{v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}, false},
		{v1.Descriptor{}, false},
	} {
		if got := isAttestation(tc.d); got != tc.want {
			t.Errorf("isAttestation(%+v) = %v", tc.d, got)
		}
	}
}

// TestErrorsBeforeTheRegistry: what fails before any request, through the
// functions and the Verifier alike.
func TestErrorsBeforeTheRegistry(t *testing.T) {
	ctx := context.Background()
	tag := name.MustParseReference("127.0.0.1:1/o/planner:1").(name.Tag)
	badCA := registry.Access{CAFile: "/nonexistent/ca.pem"}
	if _, err := Pull(ctx, tag, "", badCA); fail.ClassOf(err) != fail.Usage || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Pull with a missing CA: %v", err)
	}
	if _, err := New(badCA).Pull(ctx, tag, digest); fail.ClassOf(err) != fail.Usage || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Verifier.Pull with a missing CA: %v", err)
	}
	d := tag.Context().Digest(digest)
	if _, err := New(registry.Access{}).Signed(ctx, d, sign.Policy{}); fail.ClassOf(err) != fail.Usage || err.Error() != "nothing to verify "+d.String()+" with: no key and no certificate identity: give a public key or a certificate identity to verify with" {
		t.Errorf("Signed without keys: %v", err)
	}
	var _ interface {
		Pull(context.Context, name.Tag, string) (Report, error)
		Signed(context.Context, name.Digest, sign.Policy) (sign.Verified, error)
	} = New(registry.Access{})
}
