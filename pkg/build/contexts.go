package build

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	contentlocal "github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	digest "github.com/opencontainers/go-digest"

	"github.com/idopipe/idopipe/pkg/fail"
)

// contextName is the key the Dockerfile frontend looks a named context up
// by: the familiar form of the image reference a FROM or COPY --from
// names, without ":latest" (docker.io/library/golang:1.24.6 is
// golang:1.24.6). A name that is not an image reference (a stage alias
// with capitals, NAME::PLATFORM) is kept as given.
func contextName(name string) string {
	if strings.Contains(name, "::") {
		return name
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return name
	}
	return strings.TrimSuffix(reference.FamiliarString(named), ":latest")
}

// storeID is the session's key for a named context's OCI store. The
// frontend takes the store from the name of the reference it is given
// (oci-layout://NAME[:tag]@sha256:…), so the key must be a reference name
// without a tag or registry port: golang:1.24.6 cannot be one. A hash of
// the context's name is, and it is the same in every build, so that the
// step's cache key does not change from one build to the next.
func storeID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "idopipe-context-" + hex.EncodeToString(sum[:8])
}

// ociLayoutRef splits oci-layout:///DIR[:TAG][@sha256:…] into the
// directory, tag and digest.
func ociLayoutRef(v string) (dir, tag string, dgst digest.Digest, err error) {
	dir = strings.TrimPrefix(v, "oci-layout://")
	if i := strings.LastIndex(dir, "@"); i >= 0 {
		dgst = digest.Digest(dir[i+1:])
		dir = dir[:i]
		if err := dgst.Validate(); err != nil {
			return "", "", "", err
		}
	}
	if i := strings.LastIndex(dir, ":"); i > strings.LastIndex(dir, "/") {
		dir, tag = dir[:i], dir[i+1:]
	}
	return dir, tag, dgst, nil
}

// namedContext turns NAME=oci-layout:///dir[:tag][@sha256:…] into the
// frontend's form (oci-layout://<store>@sha256:…) and a content store
// serving that layout, under storeID(name). Other values are returned as
// they are, with a nil store.
func namedContext(name, src string) (string, content.Store, error) {
	const scheme = "oci-layout://"
	if !strings.HasPrefix(src, scheme) {
		return src, nil, nil
	}
	const fix = "write --build-context NAME=oci-layout:///DIR[:TAG][@sha256:…], DIR an OCI image layout"
	dir, tag, want, err := ociLayoutRef(src)
	if err != nil {
		return "", nil, fail.Wrap(fail.Usage, err, fix, "build context %s=%s has a bad digest", name, src)
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		return "", nil, fail.Wrap(fail.Build, err, fix, "build context %s=%s is not an OCI layout", name, src)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return "", nil, fail.Wrap(fail.Build, err, fix, "cannot read OCI layout %s", dir)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return "", nil, fail.Wrap(fail.Build, err, fix, "cannot read OCI layout %s", dir)
	}
	switch {
	case want != "":
		if _, err := os.Stat(filepath.Join(dir, "blobs", want.Algorithm().String(), want.Encoded())); err != nil {
			return "", nil, fail.New(fail.Build, "name an image the layout holds (see its index.json)", "OCI layout %s holds no image %s (build context %s)", dir, want, name)
		}
	case tag != "":
		var found []string
		for _, d := range m.Manifests {
			for _, a := range []string{d.Annotations["org.opencontainers.image.ref.name"], d.Annotations["io.containerd.image.name"]} {
				if a == tag || strings.HasSuffix(a, ":"+tag) {
					found = append(found, d.Digest.String())
					break
				}
			}
		}
		if len(found) != 1 {
			return "", nil, fail.New(fail.Build, "name the image as oci-layout://DIR@sha256:…, or tag it in the layout's index.json", "OCI layout %s has %d images tagged %q (build context %s)", dir, len(found), tag, name)
		}
		want = digest.Digest(found[0])
	default:
		if len(m.Manifests) != 1 {
			return "", nil, fail.New(fail.Build, "name the image as oci-layout://DIR:TAG or oci-layout://DIR@sha256:…", "OCI layout %s holds %d images, not one (build context %s)", dir, len(m.Manifests), name)
		}
		want = digest.Digest(m.Manifests[0].Digest.String())
	}
	store, err := contentlocal.NewStore(dir)
	if err != nil {
		return "", nil, fail.Wrap(fail.Build, err, "", "cannot open OCI layout %s", dir)
	}
	return scheme + storeID(name) + "@" + want.String(), store, nil
}

// localDir tells whether a named context's value is a local directory
// (NAME=DIR or NAME=local:DIR), which the session serves to the frontend.
func localDir(src string) (string, bool) {
	if strings.Contains(src, "://") {
		return "", false
	}
	dir := strings.TrimPrefix(src, "local:")
	fi, err := os.Stat(dir)
	return dir, err == nil && fi.IsDir()
}
