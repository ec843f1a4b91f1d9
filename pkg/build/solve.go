package build

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/session"
	"github.com/tonistiigi/fsutil"

	"github.com/idopipe/idopipe/pkg/fail"
)

// Build builds s and exports it into s.Layout.
func Build(ctx context.Context, s Spec, opts ...Option) (Result, error) {
	res, err := BuildAll(ctx, []Spec{s}, opts...)
	if err != nil {
		return Result{}, err
	}
	return res[0], nil
}

// plan is one spec made ready for BuildKit.
type plan struct {
	spec   Spec
	solve  bkclient.SolveOpt
	epoch  string
	layout *layoutStore
	auth   *authServer
	// label is the platform of one platform's part of a build split
	// across builders: its progress shows it.
	label string
}

// plan turns s into a SolveOpt for the Dockerfile frontend, exporting to
// the OCI layout through store.
func (s Spec) plan(ctx context.Context, o options, store *layoutStore) (*plan, error) {
	platforms, err := ParsePlatforms(s.Platforms)
	if err != nil {
		return nil, err
	}
	rev := describeContext(ctx, o.vcs, s)
	epoch := sourceDateEpoch(s, rev)

	attrs := map[string]string{}
	locals := map[string]fsutil.FS{}
	if IsGitURL(s.Context) {
		// BuildKit fetches the repository itself; the Dockerfile is read
		// from it.
		attrs["context"] = s.Context
		attrs["filename"] = s.Dockerfile
		if s.Dockerfile == "" {
			attrs["filename"] = "Dockerfile"
		}
	} else {
		ctxFS, err := contextFS(s.Context, store.dir)
		if err != nil {
			return nil, err
		}
		dfDir, dfName := filepath.Split(s.Dockerfile)
		if dfDir == "" {
			dfDir = "."
		}
		dfFS, err := fsutil.NewFS(dfDir)
		if err != nil {
			return nil, fail.Wrap(fail.Build, err, "", "cannot read Dockerfile directory %s", dfDir)
		}
		locals["context"], locals["dockerfile"] = ctxFS, dfFS
		attrs["filename"] = dfName
	}
	if s.NoCache {
		attrs["no-cache"] = ""
	}
	if s.Pull {
		attrs["image-resolve-mode"] = "pull"
	}
	if s.Target != "" {
		attrs["target"] = s.Target
	}
	if len(platforms) > 0 {
		attrs["platform"] = strings.Join(platforms, ",")
	}
	for k, v := range s.BuildArgs {
		attrs["build-arg:"+k] = v
	}
	labelAttrs(imageLabels(s, rev, epoch), attrs)
	prov, err := provenanceAttrs(s.Provenance)
	if err != nil {
		return nil, err
	}
	for k, v := range prov {
		attrs[k] = v
	}
	stores := map[string]content.Store{}
	for name, src := range s.Contexts {
		v, store, err := namedContext(name, src)
		if err != nil {
			return nil, err
		}
		if store != nil {
			stores[storeID(name)] = store
		} else if dir, ok := localDir(src); ok {
			fs, err := fsutil.NewFS(dir)
			if err != nil {
				return nil, fail.Wrap(fail.Build, err, "", "cannot read build context %s=%s", name, src)
			}
			key := "named-" + storeID(name)
			locals[key] = fs
			v = "local:" + key
		}
		attrs["context:"+contextName(name)] = v
	}

	exp := map[string]string{"name": s.Name + ":" + s.Version, "tar": "false", "oci-mediatypes": "true"}
	reproducibleAttrs(epoch, attrs, exp)

	var attach []session.Attachable
	sec, err := secretsAttachable(s.Secrets, o.env)
	if err != nil {
		return nil, err
	}
	if sec != nil {
		attach = append(attach, sec)
	}
	auth := newAuthServer(o.creds)
	attach = append(attach, auth)
	from, err := parseCacheEntries(s.CacheFrom, true)
	if err != nil {
		return nil, err
	}
	to, err := parseCacheEntries(s.CacheTo, false)
	if err != nil {
		return nil, err
	}

	opt := bkclient.SolveOpt{
		Frontend:      "dockerfile.v0",
		FrontendAttrs: attrs,
		LocalMounts:   locals,
		Exports: []bkclient.ExportEntry{{
			Type:        bkclient.ExporterOCI,
			Attrs:       exp,
			OutputStore: store,
		}},
		Session:      attach,
		CacheImports: from,
		CacheExports: to,
	}
	if len(stores) > 0 {
		opt.OCIStores = stores
	}
	return &plan{spec: s, solve: opt, epoch: epoch, layout: store, auth: auth}, nil
}

// result reads what the exporter reported and wrote, and records it in
// the layout's index.json under the image's names, with the export key
// (export.go) when there is one.
func (p *plan) result(resp *bkclient.SolveResponse, rec *recorder, key string) (Result, error) {
	s := p.spec
	desc, err := p.descriptor(resp)
	if err != nil {
		return Result{}, err
	}
	if key != "" {
		if desc.Annotations == nil {
			desc.Annotations = map[string]string{}
		}
		desc.Annotations[annotationExportKey] = key
	}
	names := []string{s.Name + ":" + s.Version}
	if n := resp.ExporterResponse[exptypes.ExporterImageNameKey]; n != "" {
		names = strings.Split(n, ",")
	}
	if err := p.layout.put(desc, names); err != nil {
		return Result{}, err
	}
	return p.finish(desc, rec)
}

// descriptor is the exported image's descriptor, as BuildKit reported it.
func (p *plan) descriptor(resp *bkclient.SolveResponse) (descriptor, error) {
	s := p.spec
	dgst := resp.ExporterResponse[exptypes.ExporterImageDigestKey]
	descB64 := resp.ExporterResponse[exptypes.ExporterImageDescriptorKey]
	if dgst == "" || descB64 == "" {
		return descriptor{}, fail.New(fail.Build, "", "BuildKit reported no image digest for %s:%s", s.Name, s.Version)
	}
	raw, err := base64.StdEncoding.DecodeString(descB64)
	if err != nil {
		return descriptor{}, fail.Wrap(fail.Build, err, "", "BuildKit reported a bad image descriptor for %s:%s", s.Name, s.Version)
	}
	var desc descriptor
	if err := json.Unmarshal(raw, &desc); err != nil {
		return descriptor{}, fail.Wrap(fail.Build, err, "", "BuildKit reported a bad image descriptor for %s:%s", s.Name, s.Version)
	}
	return desc, nil
}

// finish describes the image desc in the layout.
func (p *plan) finish(desc descriptor, rec *recorder) (Result, error) {
	s := p.spec
	r := Result{Layout: s.Layout, Digest: desc.Digest.String(), Ref: s.Name + ":" + s.Version, SourceDateEpoch: p.epoch}
	r.Steps, r.Cached = rec.counts(s.NoCache)
	r.CacheErrors = rec.cacheErrors()
	if err := describeLayout(&r); err != nil {
		return Result{}, err
	}
	return r, nil
}

// contextFS is the build context as the session sends it, without the OCI
// layout when that lies inside it (as .idopipe/oci in the checkout would):
// the layout changes with every export, so COPY . would never be cached,
// and every build would send the last one's image as context.
func contextFS(dir, layout string) (fsutil.FS, error) {
	fs, err := fsutil.NewFS(dir)
	if err != nil {
		return nil, fail.Wrap(fail.Build, err, "", "cannot read build context %s", dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fail.Wrap(fail.Build, err, "", "cannot read build context %s", dir)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	if real, err := filepath.EvalSymlinks(layout); err == nil {
		layout = real
	}
	rel, err := filepath.Rel(abs, layout)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return fs, nil
	}
	if rel == "." {
		return nil, fail.New(fail.Usage, "pass --oci-layout a directory outside the build context", "the OCI layout %s is the build context itself", layout)
	}
	fs, err = fsutil.NewFilterFS(fs, &fsutil.FilterOpt{ExcludePatterns: []string{filepath.ToSlash(rel)}})
	if err != nil {
		return nil, fail.Wrap(fail.Build, err, "", "cannot read build context %s", dir)
	}
	return fs, nil
}
