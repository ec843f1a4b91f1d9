package build

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"golang.org/x/sync/errgroup"

	"github.com/idopipe/idopipe/pkg/fail"
)

// BuildAll builds every spec concurrently on one BuildKit client (one
// connection to one daemon) and returns their results in the order given.
// Each image has its own build session, since BuildKit's Dockerfile
// frontend names every build's context "context" within its session;
// specs may share an OCI layout directory. Every spec is validated before
// any build starts; the first failure cancels the other builds, and its
// error is returned.
func BuildAll(ctx context.Context, specs []Spec, opts ...Option) ([]Result, error) {
	o := newOptions(opts)
	if len(specs) == 0 {
		return nil, fail.New(fail.Usage, "name at least one image to build", "nothing to build")
	}
	seen := map[string]bool{}
	for _, s := range specs {
		if err := s.Validate(); err != nil {
			return nil, err
		}
		key := s.Layout + "\x00" + s.Name + ":" + s.Version
		if seen[key] {
			return nil, fail.New(fail.Usage, "give each image its own name or version", "%s:%s is built twice into %s", s.Name, s.Version, s.Layout)
		}
		seen[key] = true
	}
	// Where each spec's platforms are built, before anything is planned
	// or solved: a platform without a builder stops the build here.
	routes, err := o.routes(ctx, specs)
	if err != nil {
		return nil, err
	}
	var stores layoutStores
	succeeded := false
	defer func() {
		if !succeeded {
			stores.discard()
		}
		stores.unlock()
	}()
	units, err := o.units(ctx, specs, routes, &stores)
	if err != nil {
		return nil, err
	}
	clients, err := o.connectAll(ctx, specs, units)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	disp, err := startDisplay(ctx, o.progress, o.mode)
	if err != nil {
		return nil, err
	}

	errs := make([]error, len(units))
	eg, ectx := errgroup.WithContext(ctx)
	fwd := errgroup.Group{}
	for i, u := range units {
		eg.Go(func() error {
			if u.part {
				errs[i] = u.plan.runPart(ectx, u, disp, &fwd)
			} else {
				u.res, errs[i] = u.plan.run(ectx, u.client, disp, &fwd)
			}
			return errs[i]
		})
	}
	if !waitSolves(ctx, eg) {
		// Cancelled, and BuildKit's client still closing its session:
		// leave it to finish in the background (the deferred Close of
		// the connection speeds that up) and stop showing its progress.
		_ = disp.close()
		return nil, ctx.Err()
	}
	err = eg.Wait()
	_ = fwd.Wait()
	_ = disp.close()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// The first real failure, not a build cancelled because of it.
		if first := fail.FirstFailure(ctx, errs); first != nil {
			return nil, first
		}
		return nil, err
	}
	results := make([]Result, len(specs))
	parts := make([][]*unit, len(specs))
	for _, u := range units {
		if u.part {
			parts[u.spec] = append(parts[u.spec], u)
			continue
		}
		u.builtOn(&u.res)
		results[u.spec] = u.res
	}
	for i, ps := range parts {
		if len(ps) == 0 {
			continue
		}
		if results[i], err = joinParts(specs[i], ps); err != nil {
			return nil, err
		}
	}
	succeeded = true
	return results, nil
}

// routingKey names what is built (images and their contexts) for a Dialer
// with several daemons: the same builds go to the same daemon, and its
// cache.
func routingKey(specs []Spec) string {
	keys := make([]string, len(specs))
	for i, s := range specs {
		keys[i] = s.Name + "\x00" + s.Context + "\x00" + s.Dockerfile
	}
	sort.Strings(keys)
	return strings.Join(keys, "\x01")
}

// run builds p: with a probe first when that can spare the export (see
// export.go), else in one solve.
func (p *plan) run(ctx context.Context, c *bkclient.Client, disp *display, fwd *errgroup.Group) (Result, error) {
	solve := func(opt bkclient.SolveOpt, shown *recorder) (*bkclient.SolveResponse, *recorder, error) {
		return p.solveOn(ctx, c, disp, fwd, opt, shown)
	}
	if !p.probeable() {
		resp, rec, err := solve(p.solve, nil)
		if err != nil {
			return Result{}, err
		}
		return p.result(resp, rec, "")
	}
	resp, rec, err := solve(p.probeOpt(), nil)
	if err != nil {
		return Result{}, err
	}
	probed := resp.ExporterResponse[exptypes.ExporterImageDigestKey]
	key := p.exportKey(probed)
	if d, ok := p.layout.exported(p.spec.Name+":"+p.spec.Version, key); ok && probed != "" {
		disp.note(fmt.Sprintf("[idopipe] %s:%s unchanged: the OCI layout holds it already (%s), not exported again", p.spec.Name, p.spec.Version, d.Digest))
		return p.finish(d, rec)
	}
	resp, _, err = solve(p.exportOpt(), rec)
	if err != nil {
		return Result{}, err
	}
	// The steps are counted in the probe: the export's solve finds every
	// one of them cached.
	return p.result(resp, rec, key)
}

// runPart builds u, one platform of a build split across builders, on its
// builder and exports it into the layout without recording it there: the
// join of the parts is what index.json gets.
func (p *plan) runPart(ctx context.Context, u *unit, disp *display, fwd *errgroup.Group) error {
	if refs := p.registryCaches(); len(refs) > 0 {
		disp.note(fmt.Sprintf("[idopipe] %s builds on %s with its own build cache %s", p.label, u.dialer, strings.Join(refs, ", ")))
	}
	resp, rec, err := p.solveOn(ctx, u.client, disp, fwd, p.solve, nil)
	if err != nil {
		return err
	}
	if u.desc, err = p.descriptor(resp); err != nil {
		return err
	}
	if n := resp.ExporterResponse[exptypes.ExporterImageNameKey]; n != "" {
		u.names = strings.Split(n, ",")
	}
	u.res.Steps, u.res.Cached = rec.counts(p.spec.NoCache)
	u.res.CacheErrors = rec.cacheErrors()
	return nil
}

// solveOn runs opt on c; the display leaves out the steps shown has shown.
func (p *plan) solveOn(ctx context.Context, c *bkclient.Client, disp *display, fwd *errgroup.Group, opt bkclient.SolveOpt, shown *recorder) (*bkclient.SolveResponse, *recorder, error) {
	once := func() (*bkclient.SolveResponse, *recorder, error) {
		rec := newRecorder()
		ch := make(chan *bkclient.SolveStatus)
		fwd.Go(func() error { rec.forward(ch, disp, shown, p.label); return nil })
		resp, err := c.Solve(ctx, nil, opt, ch) // closes ch
		return resp, rec, err
	}
	resp, rec, err := once()
	if err != nil && partialIngest(err) && ctx.Err() == nil {
		// An earlier build, interrupted while BuildKit copied a layer
		// from an OCI layout, left a partial copy that BuildKit cannot
		// resume. Its content garbage collection drops it; then the
		// build can start over.
		if gcErr := collectGarbage(ctx, c); gcErr != nil {
			err = fmt.Errorf("%w (clearing it by BuildKit's garbage collection failed too: %v)", err, gcErr)
		} else {
			disp.note("[idopipe] cleared a partial layer copy left by an interrupted build; building again")
			resp, rec, err = once()
		}
	}
	if err != nil {
		return nil, rec, explain(ctx, p.spec, rec, p.auth, err)
	}
	return resp, rec, nil
}

// partialIngest tells BuildKit's failure to resume a partial layer copy
// from an OCI layout (its session reader cannot seek).
func partialIngest(err error) bool {
	return strings.Contains(err.Error(), "unsupported offset")
}

// collectGarbage runs BuildKit's content garbage collection, which removes
// abandoned partial layer copies, without pruning any build cache: every
// prune ends with a collection, and this one's filter matches no record.
func collectGarbage(ctx context.Context, c *bkclient.Client) error {
	return c.Prune(ctx, nil, bkclient.WithFilter([]string{"id==idopipe-collect-garbage-only"}))
}

// cancelGrace is how long cancelled solves may take to return before
// BuildAll stops waiting for them.
const cancelGrace = 200 * time.Millisecond

// waitSolves waits for the solves and says whether they returned. Once ctx
// is cancelled it waits cancelGrace more: BuildKit's client may keep a
// cancelled solve's status stream open for up to 5 s without a message, and
// its session's HTTP/2 shutdown waits up to 1 s for the daemon, so a failed
// registry check or a Ctrl-C would wait seconds for nothing.
func waitSolves(ctx context.Context, eg *errgroup.Group) bool {
	waited := make(chan struct{})
	go func() { _ = eg.Wait(); close(waited) }()
	select {
	case <-waited:
		return true
	case <-ctx.Done():
	}
	select {
	case <-waited:
		return true
	case <-time.After(cancelGrace):
		return false
	}
}
