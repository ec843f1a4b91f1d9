package build

import "context"

// Builder builds a release's images on one BuildKit client: the pipeline's
// build stage calls it through a one-method interface.
type Builder struct{ opts []Option }

// NewBuilder is a Builder that builds with opts (daemon, TLS, progress,
// credentials, environment).
func NewBuilder(opts ...Option) *Builder { return &Builder{opts: opts} }

// Build builds specs, concurrently when there is more than one, and
// returns their results in the same order.
func (b *Builder) Build(ctx context.Context, specs []Spec) ([]Result, error) {
	if len(specs) == 1 {
		res, err := Build(ctx, specs[0], b.opts...)
		if err != nil {
			return nil, err
		}
		return []Result{res}, nil
	}
	return BuildAll(ctx, specs, b.opts...)
}
