// Package testenv starts the local stack that idopipe's tests and `make demo`
// run against: buildkitd (with runc), a distribution registry with TLS and
// token auth standing in for GHCR (behind a front serving GHCR's /token on
// the same host and port: token.go, front.go), and a one-node Kubernetes cluster (etcd and
// kube-apiserver through controller-runtime's envtest with the default
// admission plugins, kube-controller-manager, kube-scheduler, and a real
// kubelet on containerd, runc and the CNI bridge; see Node), and a private
// Sigstore instance shaped like GitHub's view of one (sigstore.go): a
// GitHub-shaped OIDC issuer with the runner's token request endpoint
// (oidc.go), Fulcio (fulcio.go), the timestamp authority (tsa.go) and
// Rekor v2 (rekor.go), with the trusted root and signing config that
// cosign v3, gh and sigstore-go take.
//
// The binaries come from build/tools (built by `make tools`); their directory
// is $IDOPIPE_TOOLS_BIN. Every process listens on loopback on fresh ports and
// keeps its state and log under the stack's directory.
package testenv
