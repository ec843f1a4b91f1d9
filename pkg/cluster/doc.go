// Package cluster is idopipe's side of the Kubernetes API, through client-go:
// the target namespace, the registry pull Secret, server-side apply of the
// manifest (validated first by a server-side dry run), and waiting for the
// Pods with a diagnosis of those that do not become Ready.
package cluster
