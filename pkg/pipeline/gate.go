package pipeline

import (
	"context"
	"fmt"
)

// gate refuses an image whose digest none of Options.VerifyKeys signed. It
// runs in verify-pull and before the first write to the cluster (secret),
// once per run. An image named by tag only is resolved, and the digest
// that was verified is the one deployed.
func (rel *release) gate(ctx context.Context) (string, error) {
	if len(rel.o.VerifyKeys) == 0 || rel.gated {
		return "", nil
	}
	if rel.o.DryRun && !rel.scope.deploy {
		return "", nil // nothing is pushed in a dry run, nor written
	}
	var key string
	for i, img := range rel.images {
		if img.Digest == "" {
			d, err := rel.d.Publisher.Digest(ctx, img.tag)
			if err != nil {
				return "", err
			}
			img.setDigest(d)
		}
		v, err := rel.d.Verifier.Signed(ctx, img.tag.Context().Digest(img.Digest), rel.o.VerifyKeys)
		if err != nil {
			return "", err
		}
		if i == 0 {
			rel.res.Signature = &v
			key = v.Key
		}
	}
	rel.record()
	rel.gated = true
	return fmt.Sprintf("signature of %s verified with %s", rel.images[0].Digest, key), nil
}
