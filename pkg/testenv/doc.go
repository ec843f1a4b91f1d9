// Package testenv starts the local stack that idopipe's tests and `make demo`
// run against: buildkitd (with runc), a distribution registry with TLS and
// htpasswd standing in for GHCR, and a Kubernetes control plane (etcd and
// kube-apiserver through controller-runtime's envtest, kube-scheduler, and
// kwok playing a control-plane node so that Pods reach Running).
//
// The binaries come from build/tools (built by `make tools`); their directory
// is $IDOPIPE_TOOLS_BIN. Every process listens on loopback on fresh ports and
// keeps its state and log under the stack's directory.
package testenv
