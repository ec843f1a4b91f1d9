package pipeline

import (
	"context"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/idopipe/idopipe/pkg/publish"
	"github.com/idopipe/idopipe/pkg/sign"
)

// push pushes every image, in order, and signs it when the release signs.
// An image may mount blobs from --mount-from and from the images pushed
// before it in this run (an actuator sharing the planner's base). An image
// the registry has under its tag already is not pushed again (a rerun
// after a later stage failed), but is still signed, so that a rerun
// completes a signature that failed.
func (rel *release) push(ctx context.Context) (string, error) {
	mountFrom := slices.Clone(rel.o.Target.MountFrom)
	var refs []string
	for _, img := range rel.images {
		summary, err := rel.pushOne(ctx, img, mountFrom)
		if err != nil {
			return "", err
		}
		mountFrom = append(mountFrom, img.tag.Context())
		if rel.d.Signer != nil {
			ref := img.tag.Context().Digest(img.Digest)
			signed, err := rel.d.Signer.Sign(ctx, ref)
			if err != nil {
				// Pushed, and reported so; not signed (the signer's
				// error says so): a rerun finds the image in the
				// registry and only signs it.
				rel.record()
				return "", err
			}
			rel.res.Signed = append(rel.res.Signed, &signed)
		}
		refs = append(refs, summary)
	}
	rel.record()
	return strings.Join(refs, ", ") + signedSummary(rel.res.Signed), nil
}

// pushOne pushes img unless the registry has it under its tag already
// (and no extra tag is asked for).
func (rel *release) pushOne(ctx context.Context, img *image, mountFrom []name.Repository) (string, error) {
	digest := img.built.Digest
	if have, err := rel.d.Publisher.Digest(ctx, img.tag); err == nil && have == digest && len(rel.o.Target.Tags) == 0 {
		img.setDigest(digest)
		rel.announce("push")(img.Ref + " is already in the registry: not pushed again")
		return img.Ref + " (already pushed)", nil
	}
	d, stats, err := rel.d.Publisher.Publish(ctx, img.built.Layout, digest, img.tag,
		publish.WithTags(rel.o.Target.Tags...), publish.WithMountFrom(mountFrom...))
	if err != nil {
		return "", err
	}
	img.setDigest(d.DigestStr())
	img.Blobs = &stats
	return img.Ref + " [" + stats.String() + "]", nil
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
