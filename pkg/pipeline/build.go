package pipeline

import (
	"context"
	"strings"

	"github.com/idopipe/idopipe/pkg/build"
)

// build builds every image of the release on one BuildKit client. The
// checks run alongside (the table's during): one that fails cancels the
// build, and its error is the stage's.
func (rel *release) build(ctx context.Context) (string, error) {
	specs := make([]build.Spec, len(rel.images))
	for i, img := range rel.images {
		specs[i] = img.spec
	}
	results, err := rel.d.Builder.Build(ctx, specs)
	if err != nil {
		return "", err
	}
	if len(results) == 1 {
		rel.images[0].built = results[0]
		rel.images[0].Platforms = results[0].Images
		return results[0].Digest, nil
	}
	var built []string
	for i, img := range rel.images {
		img.built = results[i]
		img.Platforms = results[i].Images
		built = append(built, img.Name+" "+img.built.Digest)
	}
	return strings.Join(built, ", "), nil
}
