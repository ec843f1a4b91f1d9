package pipeline

import (
	"context"
	"fmt"
)

// verify pulls every image back by its tag: it must resolve to the pushed
// digest, and pull. With a signature Policy the signature is checked here too.
func (rel *release) verify(ctx context.Context) (string, error) {
	var summary string
	for i, img := range rel.images {
		rep, err := rel.d.Verifier.Pull(ctx, img.tag, img.Digest)
		if err != nil {
			return "", err
		}
		if i == 0 {
			rel.res.Verify = &rep
			summary = rep.String()
		}
	}
	if n := len(rel.images) - 1; n > 0 {
		summary = fmt.Sprintf("%s; and %d more images", summary, n)
	}
	gated, err := rel.gate(ctx)
	if err != nil {
		return "", err
	}
	if gated != "" {
		summary += "; " + gated
	}
	return summary, nil
}
