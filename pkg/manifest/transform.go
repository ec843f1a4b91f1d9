package manifest

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/idopipe/idopipe/pkg/fail"
)

// Scoper tells whether a kind is namespaced. The cluster's RESTMapper is one.
type Scoper interface {
	Namespaced(gvk schema.GroupVersionKind) (bool, error)
}

// ScoperFunc adapts a function to Scoper.
type ScoperFunc func(schema.GroupVersionKind) (bool, error)

// Namespaced implements Scoper.
func (f ScoperFunc) Namespaced(gvk schema.GroupVersionKind) (bool, error) { return f(gvk) }

// Options are the transforms of a release.
type Options struct {
	// Namespace receives every namespaced object; ServiceAccount subjects of
	// (Cluster)RoleBindings point into it.
	Namespace string
	// Images maps an image's repository name (its last path element, such as
	// "planner") to the reference that replaces it in every container.
	Images map[string]string
	// PullSecret, when set, is added to imagePullSecrets of the
	// ServiceAccount of every Pod that runs a replaced image (or of the Pod
	// itself when its ServiceAccount is not in the manifest).
	PullSecret string
	Scoper     Scoper
}

// Transform returns transformed deep copies of objs; objs are not changed.
// It fails when an object names another namespace than the target, or when
// an image in Images is run by no container (the manifest would not deploy
// what was built).
func Transform(objs []Object, o Options) ([]Object, error) {
	out := make([]Object, len(objs))
	for i, obj := range objs {
		out[i] = Object{Unstructured: obj.DeepCopy(), Source: obj.Source}
	}
	for _, obj := range out {
		if err := setNamespace(obj, o); err != nil {
			return nil, err
		}
		bindSubjects(obj, o.Namespace)
	}
	used := map[string]bool{}
	pullers := map[string]bool{} // ServiceAccounts whose Pods pull a replaced image
	for _, obj := range out {
		spec, fields := podSpec(obj.Unstructured)
		if spec == nil {
			continue
		}
		replaced, err := replaceImages(obj, spec, o.Images, used)
		if err != nil {
			return nil, err
		}
		if replaced && o.PullSecret != "" {
			sa, _, _ := unstructured.NestedString(spec, "serviceAccountName")
			if sa == "" || !declares(out, "ServiceAccount", sa) {
				addPullSecret(spec, o.PullSecret)
			} else {
				pullers[sa] = true
			}
		}
		if err := unstructured.SetNestedField(obj.Object, spec, fields...); err != nil {
			return nil, fail.Wrap(fail.Internal, err, "", "cannot set pod spec of %s", obj.Ref())
		}
	}
	for repo := range o.Images {
		if !used[repo] {
			return nil, fail.New(fail.Manifest, "check --image-name and each --extra-image name against the manifests' container images (an image's last path element, e.g. cpuscale of 127.0.0.1:5000/cpuscale:0.4.0)",
				"no container in the manifest runs an image named %q", repo)
		}
	}
	for _, obj := range out {
		if obj.GetKind() == "ServiceAccount" && obj.GroupVersionKind().Group == "" && pullers[obj.GetName()] {
			addPullSecret(obj.Object, o.PullSecret)
		}
	}
	return out, nil
}

func setNamespace(obj Object, o Options) error {
	if o.Scoper == nil {
		return fail.New(fail.Internal, "", "manifest transform needs a Scoper")
	}
	namespaced, err := o.Scoper.Namespaced(obj.GroupVersionKind())
	if err != nil {
		var fe *fail.Error
		if errors.As(err, &fe) {
			return &fail.Error{Class: fe.Class, Msg: obj.Source + ": " + fe.Msg, Fix: fe.Fix, Err: fe.Err}
		}
		return err
	}
	if !namespaced {
		// Upstream gives its ClusterRoleBinding a namespace; it means nothing.
		obj.SetNamespace("")
		return nil
	}
	if ns := obj.GetNamespace(); ns != "" && ns != o.Namespace {
		return fail.New(fail.Manifest, fmt.Sprintf("remove metadata.namespace or release into -n %s", ns),
			"%s sets namespace %q but the release targets %q", obj.Ref(), ns, o.Namespace)
	}
	obj.SetNamespace(o.Namespace)
	return nil
}

// bindSubjects points ServiceAccount subjects of RBAC bindings at ns.
func bindSubjects(obj Object, ns string) {
	gvk := obj.GroupVersionKind()
	if gvk.Group != "rbac.authorization.k8s.io" || (gvk.Kind != "ClusterRoleBinding" && gvk.Kind != "RoleBinding") {
		return
	}
	subjects, found, _ := unstructured.NestedSlice(obj.Object, "subjects")
	if !found {
		return
	}
	for _, s := range subjects {
		if m, ok := s.(map[string]any); ok && m["kind"] == "ServiceAccount" {
			m["namespace"] = ns
		}
	}
	_ = unstructured.SetNestedSlice(obj.Object, subjects, "subjects")
}

// podSpec returns a copy of the pod spec an object carries and its path.
func podSpec(u *unstructured.Unstructured) (map[string]any, []string) {
	var fields []string
	switch u.GetKind() {
	case "Pod":
		fields = []string{"spec"}
	case "PodTemplate":
		fields = []string{"template", "spec"}
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job":
		fields = []string{"spec", "template", "spec"}
	case "CronJob":
		fields = []string{"spec", "jobTemplate", "spec", "template", "spec"}
	default:
		return nil, nil
	}
	spec, found, err := unstructured.NestedMap(u.Object, fields...)
	if !found || err != nil {
		return nil, nil
	}
	return spec, fields
}

func replaceImages(obj Object, spec map[string]any, images map[string]string, used map[string]bool) (bool, error) {
	replaced := false
	err := forEachImage(spec, func(m map[string]any, img string) (bool, error) {
		ref, err := name.ParseReference(img)
		if err != nil {
			return false, fail.WithCause(fail.Manifest, err, "fix the image reference", "%s: container %v has invalid image %q", obj.Ref(), m["name"], img)
		}
		repo := path.Base(ref.Context().RepositoryStr())
		to, ok := images[repo]
		if ok {
			m["image"] = to
			used[repo] = true
			replaced = true
		}
		return ok, nil
	})
	return replaced, err
}

func declares(objs []Object, kind, name string) bool {
	return slices.ContainsFunc(objs, func(o Object) bool { return o.GetKind() == kind && o.GetName() == name })
}

// addPullSecret adds {name: secret} to m's imagePullSecrets unless present.
func addPullSecret(m map[string]any, secret string) {
	list, _, _ := unstructured.NestedSlice(m, "imagePullSecrets")
	for _, s := range list {
		if e, ok := s.(map[string]any); ok && e["name"] == secret {
			return
		}
	}
	m["imagePullSecrets"] = append(list, map[string]any{"name": secret})
}

// applyRank orders kinds so that what others depend on exists first.
var applyRank = map[string]int{
	"CustomResourceDefinition": 0, "Namespace": 1, "ResourceQuota": 2, "LimitRange": 2,
	"Secret": 3, "ServiceAccount": 4, "ClusterRole": 5, "Role": 5,
	"ClusterRoleBinding": 6, "RoleBinding": 6, "ConfigMap": 7, "PersistentVolumeClaim": 8,
	"Service": 9,
}

// Order sorts objects into apply order: CRDs, Namespaces, Secrets,
// ServiceAccounts, RBAC, ConfigMaps, Services, then everything else (Pods and
// workloads) in manifest order.
func Order(objs []Object) []Object {
	out := slices.Clone(objs)
	sort.SliceStable(out, func(i, j int) bool { return rank(out[i]) < rank(out[j]) })
	return out
}

func rank(o Object) int {
	if r, ok := applyRank[o.GetKind()]; ok {
		return r
	}
	return 10
}

// Pods lists the names of the Pods among objs.
func Pods(objs []Object) []string {
	var names []string
	for _, o := range objs {
		if o.GetKind() == "Pod" && o.GroupVersionKind().Group == "" {
			names = append(names, o.GetName())
		}
	}
	return names
}
