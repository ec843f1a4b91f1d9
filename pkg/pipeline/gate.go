package pipeline

import (
	"context"
	"fmt"

	"github.com/idopipe/idopipe/pkg/sign"
)

// gate refuses an image whose digest Options.Policy accepts no signature of. It
// runs in verify-pull and before the first write to the cluster (secret),
// once per run. An image named by tag only is resolved, and the digest
// that was verified is the one deployed.
func (rel *release) gate(ctx context.Context) (string, error) {
	if rel.o.Policy.Empty() || rel.gated {
		return "", nil
	}
	if rel.o.DryRun && !rel.scope.deploy {
		return "", nil // nothing is pushed in a dry run, nor written
	}
	var signer string
	for i, img := range rel.images {
		if img.Digest == "" {
			d, err := rel.d.Publisher.Digest(ctx, img.tag)
			if err != nil {
				return "", err
			}
			img.setDigest(d)
		}
		v, err := rel.d.Verifier.Signed(ctx, img.tag.Context().Digest(img.Digest), rel.o.Policy)
		if err != nil {
			return "", err
		}
		if i == 0 {
			rel.res.Signature = &v
			signer = signedBy(v)
		}
	}
	rel.record()
	rel.gated = true
	return fmt.Sprintf("signature of %s verified with %s", rel.images[0].Digest, signer), nil
}

// signedBy names who signed: the key, or the certificate's identity and
// issuer.
func signedBy(v sign.Verified) string {
	if c := v.Certificate; c != nil {
		return c.Subject + " (issuer " + c.Issuer + ")"
	}
	return v.Key
}
