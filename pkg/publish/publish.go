package publish

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
)

// Option configures Push.
type Option func(*options)

type options struct {
	progress  io.Writer
	bar       NewBar
	tags      []string
	mountFrom []name.Repository
	stats     *Stats
}

// WithTags also points these tags of the same repository at the pushed
// image ("latest", a git short SHA); the manifest is written once per tag
// after the image is complete.
func WithTags(tags ...string) Option { return func(o *options) { o.tags = append(o.tags, tags...) } }

// WithProgress writes a line of progress (bytes pushed of the total) to w at
// most once a second, and a last one when done.
// A nil w shows nothing.
func WithProgress(w io.Writer) Option { return func(o *options) { o.progress = w } }

// Bar is a progress display redrawn in place on a terminal.
type Bar interface {
	// Set redraws it: complete bytes pushed of total (which grows as the
	// push reaches more blobs).
	Set(complete, total int64)
	// Clear removes it from the terminal, before Push's last line.
	Clear()
}

// NewBar makes the Bar for pushing the image label to the terminal w.
type NewBar func(w io.Writer, label string) Bar

// WithProgressBar shows progress on the terminal w as a bar made by newBar
// (bytes, total, rate) instead of periodic lines, and ends with the same
// last line as WithProgress. A nil w shows nothing; a nil newBar shows
// WithProgress's lines.
func WithProgressBar(w io.Writer, newBar NewBar) Option {
	return func(o *options) { o.progress, o.bar = w, newBar }
}

// Push pushes the image (or index) with the given digest from the OCI layout
// at dir to tag and returns the reference by digest.
func Push(ctx context.Context, dir, digest string, tag name.Tag, access registry.Access, opts ...Option) (name.Digest, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	obj, err := Load(dir, digest)
	if err != nil {
		return name.Digest{}, err
	}
	ropts, err := access.Options(ctx)
	if err != nil {
		return name.Digest{}, err
	}
	// One connection pool for every request of this push: the mount
	// checks, the upload, the tags and the read-back.
	base, err := access.Transport()
	if err != nil {
		return name.Digest{}, err
	}
	ropts = append(ropts, remote.WithTransport(base))
	sizes, manifests, err := blobSizes(obj)
	if err != nil {
		return name.Digest{}, fail.Wrap(fail.Usage, err, "build it again", "cannot read image %s from OCI layout %s", digest, dir)
	}
	if cands := candidates(tag.Context(), o.mountFrom); len(cands) > 0 {
		if from := findMounts(ctx, access, base, tag.Context(), cands, sizes); len(from) > 0 {
			obj = mountable(obj, from)
		}
	}
	counter := newBlobCounter(base)
	// A fresh slice: the counting transport and the progress channel
	// (closed after the push) must not reach the later calls.
	// bodyGuard: no upload body is read, and so no progress update sent,
	// after its request returned (remote closes the channel after that).
	pushOpts := append(append([]remote.Option{}, ropts...), remote.WithTransport(bodyGuard{counter}))
	var done chan struct{}
	if o.progress != nil {
		updates := make(chan v1.Update, 16)
		done = make(chan struct{})
		pushOpts = append(pushOpts, remote.WithProgress(updates))
		// The whole push's size, known before go-containerregistry reaches
		// every blob (its totals grow blob by blob).
		size := manifests
		for _, n := range sizes {
			size += n
		}
		p := progressLines
		if o.bar != nil {
			p = progressBar(o.bar)
		}
		go p(o.progress, tag, size, updates, done)
	}
	err = remote.Push(tag, obj, pushOpts...)
	if done != nil {
		<-done // remote closes the updates channel when it returns
	}
	if err != nil {
		return name.Digest{}, access.Explain(err, "push", tag)
	}
	if o.stats != nil {
		*o.stats = counter.stats(sizes)
	}
	all := []name.Tag{tag}
	for _, t := range o.tags {
		extra, err := name.NewTag(tag.Context().String()+":"+t, name.StrictValidation)
		if err != nil {
			return name.Digest{}, fail.New(fail.Usage, "tags are letters, digits, '_', '.' and '-', at most 128", "invalid tag %q", t)
		}
		if err := remote.Tag(extra, obj, ropts...); err != nil {
			return name.Digest{}, access.Explain(err, "push", extra)
		}
		all = append(all, extra)
	}
	// Read every tag back: a tag that a concurrent push moved, or that the
	// registry did not store, is found here rather than by the cluster.
	for _, t := range all {
		desc, err := remote.Head(t, ropts...)
		if err != nil {
			return name.Digest{}, access.Explain(err, "read back", t)
		}
		if desc.Digest.String() != digest {
			return name.Digest{}, fail.New(fail.Verify, "another push moved the tag; rerun", "%s points at %s after the push, not %s", t, desc.Digest, digest)
		}
	}
	return tag.Context().Digest(digest), nil
}

// Load returns the image or index with the given digest from an OCI layout.
func Load(dir, digest string) (remote.Taggable, error) {
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, fail.Wrap(fail.Usage, err, "run `idopipe build` first, or pass --oci-layout", "no OCI image layout at %s", dir)
	}
	h, err := v1.NewHash(digest)
	if err != nil {
		return nil, fail.New(fail.Usage, "pass --digest sha256:…", "bad digest %q", digest)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return nil, fail.Wrap(fail.Usage, err, "", "cannot read OCI layout %s", dir)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fail.Wrap(fail.Usage, err, "", "cannot read OCI layout %s", dir)
	}
	for _, d := range m.Manifests {
		if d.Digest != h {
			continue
		}
		if d.MediaType.IsIndex() {
			return idx.ImageIndex(h)
		}
		return idx.Image(h)
	}
	return nil, fail.New(fail.Usage, "build it again, or pass the digest `idopipe build` printed", "OCI layout %s holds no image %s", dir, digest)
}

// Latest returns the digest of the image most recently added to the layout
// under ref (name:version), for `idopipe push` after `idopipe build`.
func Latest(dir, ref string) (string, error) {
	lp, err := layout.FromPath(dir)
	if err != nil {
		return "", fail.Wrap(fail.Usage, err, "run `idopipe build` first, or pass --oci-layout", "no OCI image layout at %s", dir)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return "", fail.Wrap(fail.Usage, err, "", "cannot read OCI layout %s", dir)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return "", fail.Wrap(fail.Usage, err, "", "cannot read OCI layout %s", dir)
	}
	for i := len(m.Manifests) - 1; i >= 0; i-- {
		d := m.Manifests[i]
		if n := d.Annotations["io.containerd.image.name"]; n == ref || d.Annotations["org.opencontainers.image.ref.name"] == ref || hasSuffixRef(n, ref) {
			return d.Digest.String(), nil
		}
	}
	return "", fail.New(fail.Usage, "run `idopipe build` first, or pass --digest", "OCI layout %s holds no image %s", dir, ref)
}

// hasSuffixRef matches "docker.io/library/planner:0.4.0" against "planner:0.4.0".
func hasSuffixRef(full, ref string) bool {
	return len(full) > len(ref) && full[len(full)-len(ref)-1] == '/' && full[len(full)-len(ref):] == ref
}

// progressLines writes a line of progress at most once a second, and the
// last line when the push is done. size is the push's expected total.
func progressLines(w io.Writer, tag name.Tag, size int64, updates <-chan v1.Update, done chan<- struct{}) {
	defer close(done)
	var last v1.Update
	start := time.Now()
	var shown time.Time
	for u := range updates {
		if u.Error != nil {
			continue
		}
		last = u
		if time.Since(shown) >= time.Second {
			shown = time.Now()
			fmt.Fprintf(w, "pushing %s: %s of %s (%s/s)\n", tag, human(u.Complete), human(max(u.Total, size)), human(rate(u.Complete, start)))
		}
	}
	lastLine(w, tag, last, start)
}

// progressBar draws a Bar made by newBar for every update, clears it when
// the push is done, and writes the last line.
func progressBar(newBar NewBar) func(io.Writer, name.Tag, int64, <-chan v1.Update, chan<- struct{}) {
	return func(w io.Writer, tag name.Tag, size int64, updates <-chan v1.Update, done chan<- struct{}) {
		defer close(done)
		var last v1.Update
		start := time.Now()
		bar := newBar(w, "pushing "+tag.String())
		for u := range updates {
			if u.Error != nil {
				continue
			}
			last = u
			bar.Set(u.Complete, max(u.Total, size))
		}
		bar.Clear()
		lastLine(w, tag, last, start)
	}
}

func lastLine(w io.Writer, tag name.Tag, last v1.Update, start time.Time) {
	if last.Total > 0 {
		fmt.Fprintf(w, "pushed %s: %s in %s (%s/s)\n", tag, human(last.Total), time.Since(start).Round(time.Millisecond), human(rate(last.Total, start)))
	}
}

func rate(n int64, since time.Time) int64 {
	d := time.Since(since).Seconds()
	if d <= 0 {
		return 0
	}
	return int64(float64(n) / d)
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
