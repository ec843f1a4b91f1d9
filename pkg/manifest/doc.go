// Package manifest reads Kubernetes YAML into objects (a kind: List, as
// kubectl get -o yaml writes, unwrapped into its items) and applies the pure
// transforms a release needs: every namespaced object into the target
// namespace, the built image (pinned by digest) in place of the manifest's,
// and the registry pull Secret on the ServiceAccounts of the Pods that pull it.
//
// Nothing here talks to a cluster; whether a kind is namespaced comes from a
// Scoper, which in a release is the API server's RESTMapper.
package manifest
