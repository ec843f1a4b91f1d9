package build

import (
	"os"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	contentlocal "github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/idopipe/idopipe/pkg/fail"
)

// namedContext turns NAME=oci-layout:///dir into the frontend's form
// (oci-layout://<store>@sha256:…) and a content store serving that layout.
// Other values are returned as they are, with a nil store.
func namedContext(name, src string) (string, content.Store, error) {
	const scheme = "oci-layout://"
	if !strings.HasPrefix(src, scheme) {
		return src, nil, nil
	}
	dir := strings.TrimPrefix(src, scheme)
	var want string
	if i := strings.LastIndex(dir, "@"); i >= 0 {
		dir, want = dir[:i], dir[i+1:]
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		return "", nil, fail.Wrap(fail.Build, err, "point the build context at an OCI image layout directory", "build context %s=%s is not an OCI layout", name, src)
	}
	if want == "" {
		idx, err := lp.ImageIndex()
		if err != nil {
			return "", nil, fail.Wrap(fail.Build, err, "", "cannot read OCI layout %s", dir)
		}
		m, err := idx.IndexManifest()
		if err != nil || len(m.Manifests) != 1 {
			return "", nil, fail.New(fail.Build, "name the image as oci-layout://DIR@sha256:…", "OCI layout %s does not hold exactly one image", dir)
		}
		want = m.Manifests[0].Digest.String()
	}
	store, err := contentlocal.NewStore(dir)
	if err != nil {
		return "", nil, fail.Wrap(fail.Build, err, "", "cannot open OCI layout %s", dir)
	}
	return scheme + name + "@" + want, store, nil
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
