package registry

import (
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Fetched is what a reference names, as read from the registry: its
// descriptor and, for an index, the index and its manifests (attestation
// manifests included).
type Fetched struct {
	*remote.Descriptor
	Index     v1.ImageIndex   // nil for an image
	Manifests []v1.Descriptor // the index's; none for an image
}

// Fetch reads what ref names with opts; a failure is explained as verb
// ("pull", "read") of ref.
func (a Access) Fetch(ref name.Reference, opts []remote.Option, verb string) (Fetched, error) {
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return Fetched{}, a.Explain(err, verb, ref)
	}
	f := Fetched{Descriptor: desc}
	if !desc.MediaType.IsIndex() {
		return f, nil
	}
	if f.Index, err = desc.ImageIndex(); err != nil {
		return f, a.Explain(err, verb, ref)
	}
	m, err := f.Index.IndexManifest()
	if err != nil {
		return f, a.Explain(err, verb, ref)
	}
	f.Manifests = m.Manifests
	return f, nil
}
