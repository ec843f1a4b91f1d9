// Package kube is BuildKit in a Kubernetes cluster: a second place builds
// run, beside the daemon package buildkitd starts on the machine.
//
// Objects makes a builder's objects (a Deployment, or a StatefulSet when
// its state is on a PersistentVolumeClaim, and the ConfigMap holding its
// buildkitd.toml); Create writes them by server-side apply, so a rerun with
// other options changes the builder, and waits until its Pods answer
// `buildctl debug workers`; Remove deletes what Create wrote and nothing
// else. A Config with Platforms is one builder per platform (platform.go),
// each on its platform's nodes, found by a build from its Pods' labels
// (Dialer.ForPlatforms).
//
// Dialer reaches a builder through the API server alone: pods/exec of
// `buildctl dial-stdio` in a Ready replica (websocket, SPDY as fallback),
// the stream as a net.Conn that a BuildKit client takes as its connection.
// With several replicas a build's key (its images and contexts) picks the
// replica by rendezvous hashing, so the same build lands where its cache is.
//
// The identity in the kubeconfig needs get and list on pods and create on
// pods/exec in the builder's namespace (deploy/buildkit/rbac.yaml).
package kube
