package pipeline

import (
	"context"
	"fmt"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
)

// validate checks every input that can be checked here, before any build
// work, asking nobody: image names, build inputs, manifests and CRDs
// (read, decoded, no duplicates). What the registry and the cluster say is
// the checks stage's.
func (rel *release) validate(_ context.Context) (string, error) {
	if rel.scope.rollback {
		if rel.d.Connect == nil {
			return "", fail.New(fail.Usage, "pass --kubeconfig", "no cluster configured")
		}
		which := "the revision deployed before the current one"
		if n := rel.o.Rollback.Revision; n > 0 {
			which = fmt.Sprintf("revision %d", n)
		}
		return fmt.Sprintf("rollback of namespace %s to %s: no source, build or manifest file read", rel.o.Deploy.Namespace, which), nil
	}
	if err := rel.nameImages(); err != nil {
		return "", err
	}
	if !rel.scope.deploy {
		for _, img := range rel.images {
			if err := img.spec.Validate(); err != nil {
				return "", err
			}
		}
	}
	if rel.noCluster() {
		return fmt.Sprintf("image %s; no cluster stage selected: no manifests read, no cluster asked", rel.images[0].tag), nil
	}
	if err := rel.readManifests(); err != nil {
		return "", err
	}
	if rel.d.Connect == nil {
		return "", fail.New(fail.Usage, "pass --kubeconfig", "no cluster configured")
	}
	return fmt.Sprintf("%d objects, %d CRDs, image %s", len(rel.objs), len(rel.crds), rel.images[0].tag), nil
}

// readManifests reads the CRD files (CRDs only) and the manifests (no
// object twice).
func (rel *release) readManifests() error {
	if len(rel.o.Deploy.Manifests) == 0 {
		return fail.New(fail.Usage, "pass --manifest FILE", "no manifest to deploy")
	}
	for _, f := range rel.o.Deploy.CRDs {
		objs, err := manifest.ReadFile(f)
		if err != nil {
			return err
		}
		for _, obj := range objs {
			if obj.GetKind() != "CustomResourceDefinition" {
				return fail.New(fail.Manifest, "pass it with --manifest instead", "--crds file %s holds a %s", obj.Source, obj.GetKind())
			}
			obj.SetNamespace("")
		}
		rel.crds = append(rel.crds, objs...)
	}
	for _, f := range rel.o.Deploy.Manifests {
		objs, err := manifest.ReadFile(f)
		if err != nil {
			return err
		}
		rel.objs = append(rel.objs, objs...)
	}
	return manifest.CheckDuplicates(rel.objs)
}
