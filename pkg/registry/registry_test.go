package registry

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/idopipe/idopipe/pkg/fail"
)

func TestRepository(t *testing.T) {
	r, err := Repository("ghcr.io", "Intel-Demo", "planner")
	if err != nil || r.String() != "ghcr.io/intel-demo/planner" {
		t.Fatalf("got %v, %v", r, err)
	}
	for _, bad := range [][3]string{{"ghcr.io", "", "planner"}, {"ghcr.io", "a b", "planner"}, {"", "o", "planner"}, {"ghcr.io", "o", "Planner"}, {"ghcr.io", "o", "a/../b"}} {
		if _, err := Repository(bad[0], bad[1], bad[2]); fail.ClassOf(err) != fail.Usage {
			t.Errorf("Repository%q: %v, want a usage error", bad, err)
		}
	}
}

func FuzzRepository(f *testing.F) {
	f.Add("ghcr.io", "Intel", "planner")
	f.Add("127.0.0.1:5000", "o-w_n.er", "planner")
	f.Add("ghcr.io", "ÖWNER", "x")
	f.Fuzz(func(t *testing.T, reg, owner, image string) {
		r, err := Repository(reg, owner, image)
		if err != nil {
			if fail.ClassOf(err) != fail.Usage || strings.Contains(err.Error(), "\n") {
				t.Fatalf("not a one-line usage error: %q", err)
			}
			return
		}
		if _, err := name.NewRepository(r.String(), name.StrictValidation); err != nil {
			t.Fatalf("accepted %q, which does not parse back: %v", r, err)
		}
		if r.RepositoryStr() != strings.ToLower(r.RepositoryStr()) {
			t.Fatalf("repository %q is not lowercase", r.RepositoryStr())
		}
	})
}

// TestExplainDNS: a host that does not exist and a resolver that fails are
// told apart, each one line naming the host and the fix.
func TestExplainDNS(t *testing.T) {
	ref := name.MustParseReference("registry.example.invalid/o/planner:1")
	for _, tc := range []struct {
		err  *net.DNSError
		want []string
	}{
		{&net.DNSError{Err: "no such host", Name: "registry.example.invalid", IsNotFound: true},
			[]string{"cannot resolve registry host registry.example.invalid: no such host", "--registry"}},
		{&net.DNSError{Err: "i/o timeout", Name: "registry.example.invalid", IsTimeout: true},
			[]string{"cannot resolve registry host registry.example.invalid: the DNS lookup failed (i/o timeout)", "/etc/resolv.conf"}},
	} {
		wrapped := fmt.Errorf("ping: %w", &url.Error{Op: "Get", URL: "https://registry.example.invalid/v2/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: tc.err}})
		err := Access{}.Explain(wrapped, "push", ref)
		if fail.ClassOf(err) != fail.Registry || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: class %s, want registry, one line", err, fail.ClassOf(err))
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q does not mention %q", err, w)
			}
		}
	}
}
