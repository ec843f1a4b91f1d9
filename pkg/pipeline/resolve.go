package pipeline

import (
	"context"
	"fmt"
)

// resolve finds the digest the registry has under each tag, for a release
// that does not build and push: the cluster stages still pin by digest.
func (rel *release) resolve(ctx context.Context) (string, error) {
	for _, img := range rel.images {
		d, err := rel.d.Publisher.Digest(ctx, img.tag)
		if err != nil {
			return "", err
		}
		img.setDigest(d)
	}
	rel.record()
	return fmt.Sprintf("not built or pushed in this run: the registry has %s", rel.res.Ref), nil
}
