package publish

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"

	"github.com/idopipe/idopipe/pkg/registry"
)

// WithMountFrom names repositories of the target's registry that may hold
// some of the image's blobs: an image pushed earlier in the same release, a
// base image. For every blob the target repository lacks, Push asks them
// (a HEAD each, concurrently, in the order given) and has the registry
// mount the blobs found there (POST …/blobs/uploads/?mount=…&from=…)
// instead of uploading them again. Repositories of another registry, and
// the target itself, are left out; a candidate that cannot be asked, or
// that lacks a blob, costs nothing but that blob's upload.
func WithMountFrom(repos ...name.Repository) Option {
	return func(o *options) { o.mountFrom = append(o.mountFrom, repos...) }
}

// MountTimeout bounds the existence checks before a push that may mount:
// a slow candidate repository delays the push by at most this, after which
// the blobs not yet found are uploaded.
const MountTimeout = 10 * time.Second

// Stats counts what a push did with the image's distinct blobs (layers and
// configs of every platform image).
type Stats struct {
	Uploaded      int   `json:"uploaded"`
	Mounted       int   `json:"mounted"`
	Present       int   `json:"present"` // already in the target repository
	UploadedBytes int64 `json:"uploadedBytes"`
	MountedBytes  int64 `json:"mountedBytes"`
}

// String reads "3 blobs uploaded 2.4 MiB, 2 mounted 40.1 MiB, 1 already there".
func (s Stats) String() string {
	blobs := "blobs"
	if s.Uploaded == 1 {
		blobs = "blob"
	}
	out := fmt.Sprintf("%d %s uploaded %s", s.Uploaded, blobs, human(s.UploadedBytes))
	if s.Mounted > 0 {
		out += fmt.Sprintf(", %d mounted %s", s.Mounted, human(s.MountedBytes))
	}
	return out + fmt.Sprintf(", %d already there", s.Present)
}

// WithStats fills s with the blob counts when Push returns successfully.
func WithStats(s *Stats) Option { return func(o *options) { o.stats = s } }

// candidates are the mount sources worth asking: same registry as target,
// not target itself, each once.
func candidates(target name.Repository, repos []name.Repository) []name.Repository {
	var out []name.Repository
	seen := map[string]bool{target.String(): true}
	for _, r := range repos {
		if r.RegistryStr() != target.RegistryStr() || seen[r.String()] {
			continue
		}
		seen[r.String()] = true
		out = append(out, r)
	}
	return out
}

// blobSizes lists the distinct distributable blobs of an image or index
// (every layer and config of every image it holds) with their sizes, and
// adds up the sizes of its manifests.
func blobSizes(obj remote.Taggable) (map[v1.Hash]int64, int64, error) {
	out := map[v1.Hash]int64{}
	var manifests int64
	var walk func(any) error
	walk = func(x any) error {
		if s, ok := x.(interface{ Size() (int64, error) }); ok {
			n, err := s.Size()
			if err != nil {
				return err
			}
			manifests += n
		}
		switch x := x.(type) {
		case v1.Image:
			m, err := x.Manifest()
			if err != nil {
				return err
			}
			out[m.Config.Digest] = m.Config.Size
			for _, l := range m.Layers {
				if l.MediaType.IsDistributable() {
					out[l.Digest] = l.Size
				}
			}
		case v1.ImageIndex:
			m, err := x.IndexManifest()
			if err != nil {
				return err
			}
			for _, d := range m.Manifests {
				var child any
				var err error
				switch {
				case d.MediaType.IsImage():
					child, err = x.Image(d.Digest)
				case d.MediaType.IsIndex():
					child, err = x.ImageIndex(d.Digest)
				default:
					continue
				}
				if err != nil {
					return err
				}
				if err := walk(child); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := walk(obj)
	return out, manifests, err
}

// findMounts returns, for the blobs target lacks, the first candidate that
// holds each. Failures to ask count as "not there": the blob is uploaded.
func findMounts(ctx context.Context, access registry.Access, base http.RoundTripper, target name.Repository, cands []name.Repository, blobs map[v1.Hash]int64) map[v1.Hash]name.Repository {
	ctx, cancel := context.WithTimeout(ctx, MountTimeout)
	defer cancel()
	jobs := access.Jobs
	if jobs <= 0 {
		jobs = 4
	}
	missing := make([]v1.Hash, 0, len(blobs))
	for h := range blobs {
		missing = append(missing, h)
	}
	// First the target: what it holds needs no mount (and asks no candidate).
	missing = lacking(ctx, access, base, target, transport.PushScope, missing, jobs)
	found := map[v1.Hash]name.Repository{}
	for _, c := range cands {
		if len(missing) == 0 || ctx.Err() != nil {
			break
		}
		still := lacking(ctx, access, base, c, transport.PullScope, missing, jobs)
		gone := map[v1.Hash]bool{}
		for _, h := range still {
			gone[h] = true
		}
		for _, h := range missing {
			if !gone[h] {
				found[h] = c
			}
		}
		missing = still
	}
	return found
}

// lacking asks repo for each blob (HEAD, jobs at a time, through base) and
// returns those it does not answer 200 for.
func lacking(ctx context.Context, access registry.Access, base http.RoundTripper, repo name.Repository, scope string, blobs []v1.Hash, jobs int) []v1.Hash {
	auth := authn.Anonymous
	if access.Creds != nil {
		auth = access.Creds.Authenticator()
	}
	tr, err := transport.NewWithContext(ctx, repo.Registry, auth, base, []string{repo.Scope(scope)})
	if err != nil {
		return blobs
	}
	client := &http.Client{Transport: tr}
	var mu sync.Mutex
	var out []v1.Hash
	g := errgroup.Group{}
	g.SetLimit(jobs)
	for _, h := range blobs {
		g.Go(func() error {
			if !hasBlob(ctx, client, repo, h) {
				mu.Lock()
				out = append(out, h)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	return out
}

func hasBlob(ctx context.Context, client *http.Client, repo name.Repository, h v1.Hash) bool {
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", repo.Registry.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), h)
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// mountable wraps obj so that go-containerregistry sees the blobs in from
// as remote.MountableLayers and mounts them from their repository; in an
// index, every platform image is wrapped.
func mountable(obj remote.Taggable, from map[v1.Hash]name.Repository) remote.Taggable {
	switch x := obj.(type) {
	case v1.ImageIndex:
		return &mountIndex{index: x, from: from}
	case v1.Image:
		return &mountImage{Image: x, from: from}
	}
	return obj
}

type mountImage struct {
	v1.Image
	from map[v1.Hash]name.Repository
}

func (m *mountImage) wrap(l v1.Layer) v1.Layer {
	d, err := l.Digest()
	if err != nil {
		return l
	}
	if repo, ok := m.from[d]; ok {
		return &remote.MountableLayer{Layer: l, Reference: repo.Digest(d.String())}
	}
	return l
}

func (m *mountImage) Layers() ([]v1.Layer, error) {
	ls, err := m.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = m.wrap(l)
	}
	return out, nil
}

func (m *mountImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := m.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return m.wrap(l), nil
}

// ConfigLayer lets the config blob be mounted too (partial.ConfigLayer
// looks for this method).
func (m *mountImage) ConfigLayer() (v1.Layer, error) {
	l, err := partial.ConfigLayer(m.Image)
	if err != nil {
		return nil, err
	}
	return m.wrap(l), nil
}

// Descriptor keeps the wrapped image's descriptor (platform, annotations).
func (m *mountImage) Descriptor() (*v1.Descriptor, error) { return partial.Descriptor(m.Image) }

// index names the embedded index so that mountIndex can have an
// ImageIndex method.
type index = v1.ImageIndex

type mountIndex struct {
	index
	from map[v1.Hash]name.Repository
}

func (m *mountIndex) Image(h v1.Hash) (v1.Image, error) {
	img, err := m.index.Image(h)
	if err != nil {
		return nil, err
	}
	return &mountImage{Image: img, from: m.from}, nil
}

func (m *mountIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	idx, err := m.index.ImageIndex(h)
	if err != nil {
		return nil, err
	}
	return &mountIndex{index: idx, from: m.from}, nil
}

// Manifests is what go-containerregistry pushes an index's children from
// (partial.Manifests): the wrapped index's children, images and indexes
// wrapped, anything else as it was.
func (m *mountIndex) Manifests() ([]partial.Describable, error) {
	children, err := partial.Manifests(m.index)
	if err != nil {
		return nil, err
	}
	out := make([]partial.Describable, len(children))
	for i, c := range children {
		switch c := c.(type) {
		case v1.ImageIndex:
			out[i] = &mountIndex{index: c, from: m.from}
		case v1.Image:
			out[i] = &mountImage{Image: c, from: m.from}
		default:
			out[i] = c
		}
	}
	return out, nil
}

// blobCounter sits under go-containerregistry's transport during a push and
// records, by digest, the blobs the registry mounted (201 to a POST with
// mount=) and those uploaded (201 to the PUT that commits an upload).
type blobCounter struct {
	next     http.RoundTripper
	mu       sync.Mutex
	mounted  map[string]bool
	uploaded map[string]bool
}

func newBlobCounter(next http.RoundTripper) *blobCounter {
	return &blobCounter{next: next, mounted: map[string]bool{}, uploaded: map[string]bool{}}
}

func (c *blobCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		return resp, err
	}
	q := req.URL.Query()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case req.Method == http.MethodPost && q.Get("mount") != "":
		c.mounted[q.Get("mount")] = true
	case req.Method == http.MethodPut && q.Get("digest") != "":
		c.uploaded[q.Get("digest")] = true
	}
	return resp, nil
}

// stats counts blobs: mounted and uploaded as seen, the rest of the
// image's blobs were already there (found by a HEAD, or under a manifest
// the registry already held).
func (c *blobCounter) stats(sizes map[v1.Hash]int64) Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s Stats
	for h, size := range sizes {
		switch {
		case c.mounted[h.String()]:
			s.Mounted++
			s.MountedBytes += size
		case c.uploaded[h.String()]:
			s.Uploaded++
			s.UploadedBytes += size
		default:
			s.Present++
		}
	}
	return s
}
