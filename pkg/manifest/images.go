package manifest

import (
	"path"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// ImageNames lists, in order and without repeats, the repository names
// (an image's last path element, as Options.Images keys them) of the
// images the containers and init containers of objs run. An image
// reference that does not parse is skipped.
func ImageNames(objs []Object) []string {
	var out []string
	seen := map[string]bool{}
	for _, obj := range objs {
		spec, _ := podSpec(obj.Unstructured)
		if spec == nil {
			continue
		}
		_ = forEachImage(spec, func(_ map[string]any, img string) (bool, error) {
			if ref, err := name.ParseReference(img); err == nil {
				if repo := path.Base(ref.Context().RepositoryStr()); !seen[repo] {
					seen[repo] = true
					out = append(out, repo)
				}
			}
			return false, nil
		})
	}
	return out
}

// forEachImage calls fn with each init container and container of a Pod
// spec that names an image, and that image. A list in which fn changed a
// container (fn says so) is written back into spec; the first error stops
// the walk.
func forEachImage(spec map[string]any, fn func(c map[string]any, image string) (changed bool, err error)) error {
	for _, list := range []string{"initContainers", "containers"} {
		cs, _, _ := unstructured.NestedSlice(spec, list)
		changed := false
		for _, c := range cs {
			m, ok := c.(map[string]any)
			if !ok {
				continue
			}
			img, _ := m["image"].(string)
			if img == "" {
				continue
			}
			ch, err := fn(m, img)
			if err != nil {
				return err
			}
			changed = changed || ch
		}
		if changed {
			if err := unstructured.SetNestedSlice(spec, cs, list); err != nil {
				return err
			}
		}
	}
	return nil
}
