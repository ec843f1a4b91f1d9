package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestObjectsHostNetwork: --host-network puts the replicas in the node's
// network with the cluster's DNS; without it neither field is written, so
// a server-side apply without the option gives the fields up (the
// Deployment returns to the Pod network).
func TestObjectsHostNetwork(t *testing.T) {
	objs, err := Objects(Config{Namespace: "ci", Name: "bk", Replicas: 1, HostNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	spec := deployment(t, objs).Spec.Template.Spec
	if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("hostNetwork %v, dnsPolicy %q", spec.HostNetwork, spec.DNSPolicy)
	}
	objs, err = Objects(Config{Namespace: "ci", Name: "bk", Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	pod := objs[1].Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	for _, f := range []string{"hostNetwork", "dnsPolicy"} {
		if v, ok := pod[f]; ok {
			t.Errorf("without --host-network the Pod spec has %s: %v", f, v)
		}
	}
}
