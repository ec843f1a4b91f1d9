package pipeline

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/idopipe/idopipe/pkg/registry"
	"github.com/idopipe/idopipe/pkg/sign"
)

// signPushed signs the digest pushed to tag when the release signs
// (Options.Signer): the push stage calls it for every image, also for one
// an earlier run pushed, so a rerun completes a signature that failed.
func (rel *release) signPushed(ctx context.Context, tag name.Tag, digest string) (*sign.Result, error) {
	if rel.o.Signer == nil {
		return nil, nil
	}
	res, err := sign.Image(ctx, tag.Context().Digest(digest), rel.o.Signer, rel.o.Access)
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// gate refuses an image whose digest none of Options.VerifyKeys signed. It
// runs before the first write to the cluster (the secret stage), and in
// verify-pull, once per run. An image named by tag only is resolved, and
// the digest that was verified is the one deployed.
func (rel *release) gate(ctx context.Context) (string, error) {
	if len(rel.o.VerifyKeys) == 0 || rel.gated {
		return "", nil
	}
	if rel.o.DryRun && !rel.deployOnly {
		return "", nil // nothing is pushed in a dry run, nor written
	}
	if rel.res.Digest == "" {
		d, err := rel.headDigest(ctx, rel.tag)
		if err != nil {
			return "", err
		}
		rel.res.Digest, rel.res.Ref = d, registry.Describe(rel.tag, d)
	}
	v, err := sign.Verify(ctx, rel.tag.Context().Digest(rel.res.Digest), rel.o.VerifyKeys, rel.o.Access)
	if err != nil {
		return "", err
	}
	rel.res.Signature = &v
	for _, e := range rel.extras {
		if e.Digest == "" {
			d, err := rel.headDigest(ctx, e.tag)
			if err != nil {
				return "", err
			}
			e.Digest, e.Ref = d, registry.Describe(e.tag, d)
		}
		if _, err := sign.Verify(ctx, e.tag.Context().Digest(e.Digest), rel.o.VerifyKeys, rel.o.Access); err != nil {
			return "", err
		}
	}
	rel.gated = true
	return fmt.Sprintf("signature of %s verified with %s", rel.res.Digest, v.Key), nil
}

func (rel *release) headDigest(ctx context.Context, tag name.Tag) (string, error) {
	opts, err := rel.o.Access.Options(ctx)
	if err != nil {
		return "", err
	}
	desc, err := remote.Head(tag, opts...)
	if err != nil {
		return "", rel.o.Access.Explain(err, "pull", tag)
	}
	return desc.Digest.String(), nil
}

// signedSummary is the push summary's signing part.
func signedSummary(results []*sign.Result) string {
	var parts []string
	for _, r := range results {
		if r != nil {
			parts = append(parts, r.String())
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, "; ")
}
