package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/idopipe/idopipe/pkg/fail"
)

// MaxSize is the largest manifest file read; the API server's own limit for
// one request is 3 MiB, and a release manifest is far smaller.
const MaxSize = 8 << 20

// Object is one decoded document and where it came from.
type Object struct {
	*unstructured.Unstructured
	Source string // "file.yaml#3": file and 1-based document number
}

// Ref names an object in messages: "Pod/planner (manifest.yaml#9)".
func (o Object) Ref() string {
	return fmt.Sprintf("%s/%s (%s)", o.GetKind(), o.GetName(), o.Source)
}

// ReadFile decodes every document of a YAML or JSON file.
func ReadFile(path string) ([]Object, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fail.Wrap(fail.Manifest, errors.Unwrap(err), "check the --manifest path", "cannot read manifest %s", path)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fail.Wrap(fail.Manifest, err, "", "cannot read manifest %s", path)
	}
	if len(b) > MaxSize {
		return nil, fail.New(fail.Manifest, "split it into several --manifest files", "manifest %s is larger than %d MiB", path, MaxSize>>20)
	}
	return Decode(path, b)
}

// Decode reads the documents of data; name is used in messages. Empty
// documents are skipped, lists (kind: List) are unwrapped into their
// items; each object must have apiVersion, kind and metadata.name, and no
// two may name the same object.
func Decode(name string, data []byte) ([]Object, error) {
	if !utf8.Valid(data) {
		return nil, fail.New(fail.Manifest, "save it as UTF-8", "manifest %s is not valid UTF-8", name)
	}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []Object
	for doc := 1; ; doc++ {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		src := fmt.Sprintf("%s#%d", name, doc)
		if err != nil {
			return nil, fail.Wrap(fail.Manifest, err, "fix the YAML syntax", "manifest %s is not valid YAML", src)
		}
		if len(m) == 0 {
			continue
		}
		objs, err := unwrap(m, src)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	if len(out) == 0 {
		return nil, fail.New(fail.Manifest, "check the --manifest path", "manifest %s holds no objects", name)
	}
	return out, CheckDuplicates(out)
}

// unwrap validates the document m read from src. A list (kind List, or
// any core v1 kind ending in List, as `kubectl get -o yaml` writes them)
// gives its items, nested lists unwrapped too, each with the source
// "file#doc.items[i]"; kubectl apply does the same.
func unwrap(m map[string]any, src string) ([]Object, error) {
	o := Object{Unstructured: &unstructured.Unstructured{Object: m}, Source: src}
	if !isList(o) {
		if err := validate(o); err != nil {
			return nil, err
		}
		return []Object{o}, nil
	}
	raw, found := m["items"]
	items, ok := raw.([]any)
	if found && raw != nil && !ok {
		return nil, fail.New(fail.Manifest, "make items a list of objects", "manifest %s (%s) has items that are not a list", src, o.GetKind())
	}
	var out []Object
	for i, item := range items {
		isrc := fmt.Sprintf("%s.items[%d]", src, i)
		im, ok := item.(map[string]any)
		if !ok {
			return nil, fail.New(fail.Manifest, "make each item an object with apiVersion, kind and metadata", "manifest %s (in %s) is not an object", isrc, o.GetKind())
		}
		objs, err := unwrap(im, isrc)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// isList tells a list kubectl unwraps: v1 List, or a core v1 kind named
// …List (PodList, ServiceList). A custom resource whose kind ends in List
// is an object like any other.
func isList(o Object) bool {
	kind, _ := o.Object["kind"].(string)
	api, _ := o.Object["apiVersion"].(string)
	return api == "v1" && strings.HasSuffix(kind, "List")
}

// CheckDuplicates fails when two objects (from one file or several) name
// the same object: the second would silently replace the first.
func CheckDuplicates(objs []Object) error {
	seen := map[string]string{}
	for _, o := range objs {
		key := o.GroupVersionKind().GroupKind().String() + "/" + o.GetNamespace() + "/" + o.GetName()
		if prev, dup := seen[key]; dup {
			return fail.New(fail.Manifest, "remove one of them", "%s declares %s/%s again (first at %s)", o.Source, o.GetKind(), o.GetName(), prev)
		}
		seen[key] = o.Source
	}
	return nil
}

func validate(o Object) error {
	for _, f := range []string{"apiVersion", "kind"} {
		if s, ok := o.Object[f].(string); !ok || s == "" {
			return fail.New(fail.Manifest, "add "+f, "manifest %s has no %s", o.Source, f)
		}
	}
	if _, ok := o.Object["metadata"].(map[string]any); !ok {
		return fail.New(fail.Manifest, "add metadata.name", "manifest %s (%s) has no metadata", o.Source, o.GetKind())
	}
	if n, ok := o.Object["metadata"].(map[string]any)["name"]; ok && n != nil {
		if _, isString := n.(string); !isString {
			return fail.New(fail.Manifest, "quote it (YAML reads y, n, yes, no, on, off and numbers as non-strings)", "manifest %s (%s) has a metadata.name that is not a string: %v", o.Source, o.GetKind(), n)
		}
	}
	if o.GetName() == "" {
		if o.GetGenerateName() != "" {
			return fail.New(fail.Manifest, "give it a fixed metadata.name so that a rerun updates it", "manifest %s (%s) uses generateName, which apply cannot track", o.Source, o.GetKind())
		}
		return fail.New(fail.Manifest, "add metadata.name", "manifest %s (%s) has no metadata.name", o.Source, o.GetKind())
	}
	return nil
}
