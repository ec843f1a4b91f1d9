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
		for _, list := range []string{"initContainers", "containers"} {
			cs, _, _ := unstructured.NestedSlice(spec, list)
			for _, c := range cs {
				m, ok := c.(map[string]any)
				if !ok {
					continue
				}
				img, _ := m["image"].(string)
				ref, err := name.ParseReference(img)
				if img == "" || err != nil {
					continue
				}
				repo := path.Base(ref.Context().RepositoryStr())
				if !seen[repo] {
					seen[repo] = true
					out = append(out, repo)
				}
			}
		}
	}
	return out
}
