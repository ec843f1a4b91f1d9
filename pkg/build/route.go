package build

import (
	"context"
	"slices"
	"strings"

	bkclient "github.com/moby/buildkit/client"
	"golang.org/x/sync/errgroup"

	"github.com/idopipe/idopipe/pkg/fail"
)

// PlatformRouter is a Dialer that may stand for several builders, one per
// platform, each building its own natively (BuildKit in a cluster with a
// builder per node architecture, as buildx's nodes). A multi-platform
// build on it solves each platform on its builder, concurrently, and
// joins the platform images into one index (join.go).
type PlatformRouter interface {
	Dialer
	// Route returns, for each of platforms in order, the Dialer of the
	// builder that builds it; nil when the Dialer is one builder that
	// builds every platform itself. An error (a platform without a
	// builder) stops the build before any solve.
	Route(ctx context.Context, platforms []string) ([]Dialer, error)
}

// unit is one solve of BuildAll: a whole spec, or one platform of a spec
// split across builders (a part).
type unit struct {
	plan   *plan
	spec   int    // index of the spec in BuildAll's
	dialer Dialer // the builder it runs on; nil: the options' daemon
	part   bool

	client  *bkclient.Client
	replica string // the connection's remote address (for a dialed builder, its Pod)

	res   Result
	desc  descriptor // a part's export
	names []string   // a part's image names, as the exporter reported them
}

// routes asks a PlatformRouter where each spec's platforms are built:
// nil for a spec its one builder (or the daemon) builds whole.
func (o options) routes(ctx context.Context, specs []Spec) ([][]Dialer, error) {
	out := make([][]Dialer, len(specs))
	r, ok := o.dialer.(PlatformRouter)
	if !ok {
		return out, nil
	}
	for i, s := range specs {
		ps, err := ParsePlatforms(s.Platforms)
		if err != nil {
			return nil, err
		}
		if out[i], err = r.Route(ctx, ps); err != nil {
			return nil, err
		}
		if out[i] != nil && len(out[i]) != len(ps) {
			return nil, fail.New(fail.Internal, "", "builder %s routed %d platforms to %d builders", o.dialer, len(ps), len(out[i]))
		}
	}
	return out, nil
}

// units plans every solve: a spec built whole, on its one routed builder
// or the options' daemon, or one part per platform on each platform's
// builder.
func (o options) units(ctx context.Context, specs []Spec, routes [][]Dialer, stores *layoutStores) ([]*unit, error) {
	var units []*unit
	for i, s := range specs {
		store, err := stores.get(ctx, s.Layout)
		if err != nil {
			return nil, err
		}
		if len(routes[i]) <= 1 {
			p, err := s.plan(ctx, o, store)
			if err != nil {
				return nil, err
			}
			u := &unit{plan: p, spec: i, dialer: o.dialer}
			if len(routes[i]) == 1 {
				u.dialer = routes[i][0]
			}
			units = append(units, u)
			continue
		}
		platforms, _ := ParsePlatforms(s.Platforms)
		for j, d := range routes[i] {
			sub := s
			sub.Platforms = []string{platforms[j]}
			p, err := sub.plan(ctx, o, store)
			if err != nil {
				return nil, err
			}
			p.forPlatform(platforms[j])
			units = append(units, &unit{plan: p, spec: i, dialer: d, part: true})
		}
	}
	return units, nil
}

// connectAll opens one client per builder the units run on, concurrently:
// each dialed builder with the key of the specs it builds (its replica
// choice), the options' daemon as before.
func (o options) connectAll(ctx context.Context, specs []Spec, units []*unit) ([]*bkclient.Client, error) {
	type conn struct {
		d       Dialer
		specs   []Spec
		seen    map[int]bool
		client  *bkclient.Client
		replica string
	}
	key := func(u *unit) string {
		if u.dialer == nil {
			return "\x00daemon"
		}
		return u.dialer.String()
	}
	var conns []*conn
	byName := map[string]*conn{}
	for _, u := range units {
		c, ok := byName[key(u)]
		if !ok {
			c = &conn{d: u.dialer, seen: map[int]bool{}}
			byName[key(u)] = c
			conns = append(conns, c)
		}
		if !c.seen[u.spec] {
			c.seen[u.spec] = true
			c.specs = append(c.specs, specs[u.spec])
		}
	}
	eg, ectx := errgroup.WithContext(ctx)
	for _, c := range conns {
		eg.Go(func() error {
			var err error
			if c.d == nil {
				c.client, err = o.connect(ectx, routingKey(c.specs))
				return err
			}
			c.client, c.replica, err = dial(ectx, c.d, routingKey(c.specs))
			return err
		})
	}
	err := eg.Wait()
	var clients []*bkclient.Client
	for _, c := range conns {
		if c.client != nil {
			clients = append(clients, c.client)
		}
	}
	if err != nil {
		for _, c := range clients {
			c.Close()
		}
		if first := fail.FirstFailure(ctx, []error{err}); first != nil {
			return nil, first
		}
		return nil, err
	}
	for _, u := range units {
		c := byName[key(u)]
		u.client, u.replica = c.client, c.replica
	}
	return clients, nil
}

// forPlatform makes p one platform's part of a build split across
// builders: its progress is labelled with the platform, and its registry
// and local caches are the platform's own (a ref's tag and a directory
// get -OS-ARCH[-VARIANT]), so that two builders never write one cache.
func (p *plan) forPlatform(platform string) {
	p.label = platform
	suffix := "-" + strings.ReplaceAll(platform, "/", "-")
	for _, list := range [][]bkclient.CacheOptionsEntry{p.solve.CacheImports, p.solve.CacheExports} {
		for _, e := range list {
			switch e.Type {
			case "registry":
				e.Attrs["ref"] = platformRef(e.Attrs["ref"], suffix)
			case "local":
				for _, k := range []string{"src", "dest"} {
					if v := e.Attrs[k]; v != "" {
						e.Attrs[k] = strings.TrimRight(v, "/") + suffix
					}
				}
			}
		}
	}
}

// registryCaches are the refs of p's registry caches, imported or
// exported, each once.
func (p *plan) registryCaches() []string {
	var refs []string
	for _, list := range [][]bkclient.CacheOptionsEntry{p.solve.CacheImports, p.solve.CacheExports} {
		for _, e := range list {
			if r := e.Attrs["ref"]; e.Type == "registry" && !slices.Contains(refs, r) {
				refs = append(refs, r)
			}
		}
	}
	return refs
}

// platformRef is registry cache ref with suffix added to its tag
// (latest when it has none); a ref by digest stays (it is only read).
func platformRef(ref, suffix string) string {
	if strings.Contains(ref, "@") {
		return ref
	}
	slash := strings.LastIndex(ref, "/")
	if colon := strings.LastIndex(ref, ":"); colon > slash {
		return ref + suffix
	}
	return ref + ":latest" + suffix
}

// joinParts joins the parts of spec i into its image index and records
// it in the layout under the image's names; the result sums the parts'
// steps and says which builder built each platform.
func joinParts(s Spec, parts []*unit) (Result, error) {
	store := parts[0].plan.layout
	ps := make([]part, len(parts))
	for j, u := range parts {
		ps[j] = part{platform: u.plan.label, desc: u.desc}
	}
	desc, err := store.join(ps)
	if err != nil {
		return Result{}, err
	}
	names := parts[0].names
	if len(names) == 0 {
		names = []string{s.Name + ":" + s.Version}
	}
	if err := store.put(desc, names); err != nil {
		return Result{}, err
	}
	r := Result{Layout: s.Layout, Digest: desc.Digest.String(), Ref: s.Name + ":" + s.Version, SourceDateEpoch: parts[0].plan.epoch}
	for _, u := range parts {
		r.Steps += u.res.Steps
		r.Cached += u.res.Cached
		for _, e := range u.res.CacheErrors {
			r.CacheErrors = append(r.CacheErrors, u.plan.label+": "+e)
		}
	}
	if err := describeLayout(&r); err != nil {
		return Result{}, err
	}
	for i := range r.Images {
		for _, u := range parts {
			if u.plan.label == r.Images[i].Platform {
				r.Images[i].Builder, r.Images[i].Replica = u.dialer.String(), u.replica
			}
		}
	}
	return r, nil
}

// builtOn records in r which builder built each of its images, when the
// unit ran on a dialed builder.
func (u *unit) builtOn(r *Result) {
	if u.dialer == nil {
		return
	}
	for i := range r.Images {
		r.Images[i].Builder, r.Images[i].Replica = u.dialer.String(), u.replica
	}
}
