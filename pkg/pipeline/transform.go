package pipeline

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/idopipe/idopipe/pkg/manifest"
)

// transform applies the release's transforms to the manifest: every
// namespaced object into the namespace, the pull Secret on the Pods'
// ServiceAccounts, and each image (by digest when pin and the digest is
// known, else by tag) into the containers that run an image of its name.
// Kinds defined by --crds count as namespaced or not by the CRD's scope, so
// the transform works before the CRDs are applied.
func (rel *release) transform(pin bool) ([]manifest.Object, error) {
	images := map[string]string{}
	for _, img := range rel.images {
		images[img.Name] = img.Image.Image
		if pin && img.Ref != "" && img.Digest != "" {
			images[img.Name] = img.Ref
		}
	}
	crdScope := map[schema.GroupKind]bool{}
	for _, c := range rel.crds {
		g, _, _ := unstructured.NestedString(c.Object, "spec", "group")
		k, _, _ := unstructured.NestedString(c.Object, "spec", "names", "kind")
		scope, _, _ := unstructured.NestedString(c.Object, "spec", "scope")
		crdScope[schema.GroupKind{Group: g, Kind: k}] = scope == "Namespaced"
	}
	scoper := manifest.ScoperFunc(func(gvk schema.GroupVersionKind) (bool, error) {
		if namespaced, ok := crdScope[gvk.GroupKind()]; ok {
			return namespaced, nil
		}
		return rel.kube.Namespaced(gvk)
	})
	return manifest.Transform(rel.objs, manifest.Options{
		Namespace:  rel.o.Deploy.Namespace,
		Images:     images,
		PullSecret: rel.o.Deploy.SecretName,
		Scoper:     scoper,
	})
}
