package pipeline

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
)

// StageNames are the release's stages, in order.
var StageNames = []string{"validate", "build", "push", "verify-pull", "secret", "apply", "wait"}

// Selection picks stages by name: From and To bound the run (inclusive),
// Skip leaves some out. validate always runs.
type Selection struct {
	From, To string
	Skip     []string
}

// selected returns the names of the stages to run, or a usage error for an
// unknown name or a selection whose stages cannot run without a skipped one.
func (s Selection) selected() ([]string, error) {
	index := func(n, flag string) (int, error) {
		i := slices.Index(StageNames, n)
		if i < 0 {
			return 0, fail.New(fail.Usage, "use one of "+strings.Join(StageNames, ", "), "%s: unknown stage %q", flag, n)
		}
		return i, nil
	}
	from, to := 0, len(StageNames)-1
	var err error
	if s.From != "" {
		if from, err = index(s.From, "--from"); err != nil {
			return nil, err
		}
	}
	if s.To != "" {
		if to, err = index(s.To, "--to"); err != nil {
			return nil, err
		}
	}
	if from > to {
		return nil, fail.New(fail.Usage, "--from must come before --to", "--from %s is after --to %s", s.From, s.To)
	}
	for _, n := range s.Skip {
		if _, err := index(n, "--skip"); err != nil {
			return nil, err
		}
		if n == "validate" {
			return nil, fail.New(fail.Usage, "drop validate from --skip; it changes nothing and guards the rest", "--skip validate: validate always runs")
		}
	}
	var out []string
	for i, n := range StageNames {
		if n == "validate" || (i >= from && i <= to && !slices.Contains(s.Skip, n)) {
			out = append(out, n)
		}
	}
	if slices.Contains(out, "apply") && !slices.Contains(out, "secret") {
		return nil, fail.New(fail.Usage, "run secret with apply (it holds the dry run that apply carries out)", "apply needs the secret stage")
	}
	if slices.Contains(out, "push") && !slices.Contains(out, "build") {
		return nil, fail.New(fail.Usage, "use `idopipe push --oci-layout DIR` for an image built earlier", "push needs the build stage in a release")
	}
	return out, nil
}

// resolve finds the digest the registry has under the tag, for a release
// that does not build and push: the cluster stages still pin by digest.
func (rel *release) resolve(ctx context.Context) (string, error) {
	opts, err := rel.o.Access.Options(ctx)
	if err != nil {
		return "", err
	}
	desc, err := remote.Head(rel.tag, opts...)
	if err != nil {
		return "", rel.o.Access.Explain(err, "pull", rel.tag)
	}
	rel.res.Image, rel.res.Digest = rel.tag.String(), desc.Digest.String()
	rel.res.Ref = registry.Describe(rel.tag, rel.res.Digest)
	for _, e := range rel.extras {
		d, err := remote.Head(e.tag, opts...)
		if err != nil {
			return "", rel.o.Access.Explain(err, "pull", e.tag)
		}
		e.Digest, e.Ref = d.Digest.String(), registry.Describe(e.tag, d.Digest.String())
		rel.res.Extra = append(rel.res.Extra, e.Image)
	}
	return fmt.Sprintf("not built or pushed in this run: the registry has %s", rel.res.Ref), nil
}
