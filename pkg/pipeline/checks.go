package pipeline

import (
	"context"
)

// checks asks the registry and the cluster, changing nothing: the token
// may push to every repository, the API server answers, every kind is
// served (or defined by --crds), the manifest transform works (namespaces,
// the images run), and the namespace and pull Secret name are usable. It
// runs alongside the build when there is one (the table says so), and the
// release goes on to the push only once it has passed.
func (rel *release) checks(ctx context.Context) (string, error) {
	if !rel.scope.deploy {
		// A token that can log in but not push is found before any push.
		for _, img := range rel.images {
			if err := rel.d.Publisher.Preflight(ctx, img.tag.Context()); err != nil {
				return "", err
			}
		}
	}
	if rel.noCluster() {
		return "registry ready", nil
	}
	kube, err := rel.connect(ctx)
	if err != nil {
		return "", err
	}
	if _, err := rel.transform(false); err != nil {
		return "", err
	}
	if err := kube.CheckTarget(ctx, rel.o.Deploy.Namespace, rel.o.Deploy.SecretName); err != nil {
		return "", err
	}
	if rel.scope.deploy {
		return "cluster ready, cluster " + kube.Host(), nil
	}
	return "registry and cluster ready, cluster " + kube.Host(), nil
}
