package cluster

import (
	"context"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodePlatforms lists the distinct os/arch of the cluster's nodes
// ("linux/amd64"), from the kubelet-reported node info or, failing that,
// the well-known labels.
func (c *Client) NodePlatforms(ctx context.Context) ([]string, error) {
	nodes, err := c.Core.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, c.explain(ctx, err, "list nodes")
	}
	seen := map[string]bool{}
	for _, n := range nodes.Items {
		os, arch := n.Status.NodeInfo.OperatingSystem, n.Status.NodeInfo.Architecture
		if os == "" {
			os = n.Labels[corev1.LabelOSStable]
		}
		if arch == "" {
			arch = n.Labels[corev1.LabelArchStable]
		}
		if os != "" && arch != "" {
			seen[os+"/"+arch] = true
		}
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}
