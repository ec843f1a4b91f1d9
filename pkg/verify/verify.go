package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
	"github.com/idopipe/idopipe/pkg/sign"
)

// Report is what a pull showed.
type Report struct {
	Ref       string   `json:"ref"`
	Digest    string   `json:"digest"`
	MediaType string   `json:"mediaType"`
	Platforms []string `json:"platforms"`
	// Anonymous is true when the image can be pulled without credentials
	// (a public package); a cluster then needs no pull Secret.
	Anonymous bool `json:"anonymous"`
	// Visibility is public (anonymous pulls work), private (the registry
	// refuses them: a new GHCR package is private until its owner changes
	// that), or unknown (the anonymous check itself failed).
	Visibility string `json:"visibility"`
}

// The values of Report.Visibility.
const (
	Public  = "public"
	Private = "private"
	Unknown = "unknown"
)

// Option tunes Pull.
type Option func(*options)

type options struct {
	full      bool
	platforms []string
}

// WithFull downloads every layer and checks its size and sha256, as a
// container runtime would before unpacking it.
func WithFull() Option { return func(o *options) { o.full = true } }

// WithPlatforms requires a manifest for each platform ("linux/amd64").
func WithPlatforms(platforms ...string) Option {
	return func(o *options) { o.platforms = append(o.platforms, platforms...) }
}

// Verifier runs the pull checks with one registry access: the pipeline's
// verify stage calls it through an interface, so that its own logic is
// tested without a registry.
type Verifier struct {
	access registry.Access
	opts   []Option
}

// New returns a Verifier that reaches the registry with access; opts apply
// to every Pull.
func New(access registry.Access, opts ...Option) *Verifier {
	return &Verifier{access: access, opts: opts}
}

// Pull pulls tag back as Pull does; digest, when not empty, is the digest
// the tag must resolve to.
func (v *Verifier) Pull(ctx context.Context, tag name.Tag, digest string) (Report, error) {
	return Pull(ctx, tag, digest, v.access, v.opts...)
}

// Signed checks that d is signed by one of keys (sign.Verify).
func (v *Verifier) Signed(ctx context.Context, d name.Digest, keys []sign.Key) (sign.Verified, error) {
	return sign.Verify(ctx, d, sign.Policy{Keys: keys}, v.access)
}

// Pull resolves ref with access and reads its manifest(s) and config(s).
// When expected is not empty the resolved digest must equal it.
func Pull(ctx context.Context, ref name.Reference, expected string, access registry.Access, opts ...Option) (Report, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	r, err := pull(ctx, ref, expected, access, o)
	if err != nil {
		return r, err
	}
	for _, want := range o.platforms {
		if !hasPlatform(r.Platforms, want) {
			return r, fail.New(fail.Platform, "build with --platform including "+want,
				"%s has no image for platform %s (it has %s)", ref, want, strings.Join(r.Platforms, ", "))
		}
	}
	r.Visibility = visibility(ctx, ref, access)
	r.Anonymous = r.Visibility == Public
	return r, nil
}

func pull(ctx context.Context, ref name.Reference, expected string, access registry.Access, o options) (Report, error) {
	opts, err := access.Options(ctx)
	if err != nil {
		return Report{}, err
	}
	f, err := access.Fetch(ref, opts, "pull")
	if err != nil && f.Descriptor == nil {
		return Report{}, err
	}
	desc := f.Descriptor
	r := Report{Ref: ref.String(), Digest: desc.Digest.String(), MediaType: string(desc.MediaType)}
	if expected != "" && desc.Digest.String() != expected {
		return r, fail.New(fail.Verify, "another push may have moved the tag; rerun the release",
			"%s resolves to %s, not the expected %s", ref, desc.Digest, expected)
	}
	if err != nil { // the index's manifest did not read
		return r, err
	}
	if f.Index != nil {
		for _, d := range f.Manifests {
			if isAttestation(d) {
				continue
			}
			img, err := f.Index.Image(d.Digest)
			if err != nil {
				return r, access.Explain(err, "pull", ref)
			}
			child := ref.Context().Digest(d.Digest.String())
			if err := readConfig(img); err != nil {
				return r, access.Explain(err, "pull", child)
			}
			if o.full {
				if err := checkLayers(img, child, access); err != nil {
					return r, err
				}
			}
			if d.Platform != nil {
				r.Platforms = append(r.Platforms, d.Platform.String())
			}
		}
	} else {
		img, err := desc.Image()
		if err != nil {
			return r, access.Explain(err, "pull", ref)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return r, access.Explain(err, "pull", ref)
		}
		r.Platforms = append(r.Platforms, (&v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}).String())
		if o.full {
			if err := checkLayers(img, ref, access); err != nil {
				return r, err
			}
		}
	}
	return r, nil
}

// checkLayers downloads every layer of img, four at a time, and checks its
// size and sha256 against the manifest (go-containerregistry's reader
// verifies both while streaming; nothing is written to disk).
func checkLayers(img v1.Image, ref name.Reference, access registry.Access) error {
	m, err := img.Manifest()
	if err != nil {
		return access.Explain(err, "pull", ref)
	}
	var eg errgroup.Group
	eg.SetLimit(4)
	for _, d := range m.Layers {
		eg.Go(func() error {
			l, err := img.LayerByDigest(d.Digest)
			if err != nil {
				return access.Explain(err, "pull", ref)
			}
			rc, err := l.Compressed()
			if err != nil {
				return access.Explain(err, "pull", ref)
			}
			defer rc.Close()
			n, err := io.Copy(io.Discard, rc)
			switch {
			case err != nil && (strings.Contains(err.Error(), "checksum") || strings.Contains(err.Error(), "size")):
				return fail.WithCause(fail.Corrupt, err, "push the image again", "%s: layer %s does not match its digest or size (%d bytes read, %d expected)", ref, d.Digest, n, d.Size)
			case err != nil:
				return access.Explain(err, "pull", ref)
			case n != d.Size:
				return fail.New(fail.Corrupt, "push the image again", "%s: layer %s is %d bytes, the manifest says %d", ref, d.Digest, n, d.Size)
			}
			return nil
		})
	}
	return eg.Wait()
}

func hasPlatform(have []string, want string) bool {
	for _, h := range have {
		if h == want || strings.HasPrefix(h, want+"/") { // linux/arm64 matches linux/arm64/v8
			return true
		}
	}
	return false
}

// readConfig fetches the config blob: a manifest whose config is missing is
// not pullable.
func readConfig(img v1.Image) error {
	_, err := img.RawConfigFile()
	return err
}

// isAttestation tells BuildKit's attestation manifests (provenance, SBOM),
// which carry platform unknown/unknown, from the platform images.
var isAttestation = build.IsAttestation

// visibility asks for ref without credentials: an answer means public, a
// 401 or 403 private, anything else unknown.
func visibility(ctx context.Context, ref name.Reference, access registry.Access) string {
	anon := access
	anon.Creds = nil
	opts, err := anon.Options(ctx)
	if err != nil {
		return Unknown
	}
	_, err = remote.Head(ref, opts...)
	var te *transport.Error
	switch {
	case err == nil:
		return Public
	case errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden):
		return Private
	}
	return Unknown
}

// String is the one-line summary, with what the visibility means for a
// cluster that pulls the image.
func (r Report) String() string {
	ref := r.Ref
	if !strings.HasSuffix(ref, "@"+r.Digest) { // a reference by digest names it already
		ref += "@" + r.Digest
	}
	return fmt.Sprintf("%s pullable, platforms %v; %s", ref, r.Platforms, r.VisibilityNote())
}

// VisibilityNote says whether the package can be pulled without
// credentials and, when it cannot, what a cluster needs.
func (r Report) VisibilityNote() string {
	switch r.Visibility {
	case Public:
		return "public: anonymous pulls work, the cluster needs no pull Secret"
	case Private:
		return "private: anonymous pulls are refused, so the cluster needs the pull Secret (idopipe creates it), or make the package public in its package settings (Danger Zone, Change visibility)"
	}
	return "visibility unknown: the anonymous pull check failed; keep the pull Secret"
}
