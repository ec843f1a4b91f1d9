package publish

import (
	"context"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/idopipe/idopipe/pkg/registry"
)

// Publisher pushes to one registry with one set of credentials: the
// pipeline's push stage (and the push command through it) calls it.
type Publisher struct {
	access registry.Access
	opts   []Option
}

// New is a Publisher for access; opts (progress, a bar) apply to every push.
func New(access registry.Access, opts ...Option) *Publisher {
	return &Publisher{access: access, opts: opts}
}

// Digest is what tag resolves to in the registry now; a failure is
// explained as a pull of tag (a tag that does not exist is fail.NotFound).
func (p *Publisher) Digest(ctx context.Context, tag name.Tag) (string, error) {
	opts, err := p.access.Options(ctx)
	if err != nil {
		return "", err
	}
	desc, err := remote.Head(tag, opts...)
	if err != nil {
		return "", p.access.Explain(err, "pull", tag)
	}
	return desc.Digest.String(), nil
}

// Has checks that the registry still has ref, the image's manifest by its
// digest (fail.NotFound when it does not).
func (p *Publisher) Has(ctx context.Context, ref name.Digest) error {
	opts, err := p.access.Options(ctx)
	if err != nil {
		return err
	}
	if _, err := remote.Head(ref, opts...); err != nil {
		return p.access.Explain(err, "pull", ref)
	}
	return nil
}

// Preflight proves the credentials may push to repo (see the function).
func (p *Publisher) Preflight(ctx context.Context, repo name.Repository) error {
	return Preflight(ctx, repo, p.access)
}

// Publish pushes the image with digest from the OCI layout to tag, with
// the Publisher's options and then opts (tags, mounts), and returns the
// reference by digest and what the push did.
func (p *Publisher) Publish(ctx context.Context, layout, digest string, tag name.Tag, opts ...Option) (name.Digest, Stats, error) {
	var stats Stats
	all := append(append(append([]Option{}, p.opts...), opts...), WithStats(&stats))
	d, err := Push(ctx, layout, digest, tag, p.access, all...)
	return d, stats, err
}
