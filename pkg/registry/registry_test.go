package registry

import (
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
