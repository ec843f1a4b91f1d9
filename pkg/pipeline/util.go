package pipeline

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/idopipe/idopipe/pkg/manifest"
)

func unstructuredString(o manifest.Object, fields ...string) (string, bool, error) {
	return unstructured.NestedString(o.Object, fields...)
}
