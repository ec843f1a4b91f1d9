package verify

import (
	"context"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/idopipe/idopipe/pkg/registry"
	"github.com/idopipe/idopipe/pkg/sign"
)

// Verifier checks pushed images in one registry with one set of
// credentials: the pipeline's verify-pull stage calls it.
type Verifier struct{ access registry.Access }

// New is a Verifier reading through access.
func New(access registry.Access) *Verifier { return &Verifier{access: access} }

// Pull checks that tag resolves to digest and pulls it (see Pull).
func (v *Verifier) Pull(ctx context.Context, tag name.Tag, digest string) (Report, error) {
	return Pull(ctx, tag, digest, v.access)
}

// Signed checks that one of keys signed d (see sign.Verify).
func (v *Verifier) Signed(ctx context.Context, d name.Digest, keys []sign.Key) (sign.Verified, error) {
	return sign.Verify(ctx, d, keys, v.access)
}
