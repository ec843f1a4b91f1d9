// Package e2e holds the end-to-end tests of idopipe. They build the idopipe
// binary (cmd/idopipe) once and run it as a user would, against the real
// local stack of internal/testenv (buildkitd, a TLS registry with GHCR's token flow, a
// one-node cluster whose kubelet really pulls and runs the Pods), started
// once for the package by TestMain.
//
// helpers_test.go holds everything the tests share (setup, the runners,
// namespace cleanup, arguments, parsing, assertions); every other file holds
// the tests of one topic. No test depends on another having run before it.
//
// Most tests run in parallel (t.Parallel; `go test -parallel N` sets how
// many at once). What lets them: each test has namespaces of its own,
// deleted when it ends without waiting for the namespace controller; a
// release into namespace NS pushes under owner IDO-Test-NS (ownerOf) and
// applies a copy of the fixture manifest whose ClusterRole and
// ClusterRoleBinding are named for NS (manifestFor), so no two tests write
// the same repository or cluster-scoped object; and the fixture's Pods
// request little CPU, so several releases fit on the node together.
//
// A few tests stay serial, and Go runs them before the parallel ones: the
// one that stops the kubelet (TestSilentKubelet, last, once the kubelet has
// its heartbeat Lease), the mount tests (they count requests against
// repositories they share), the one that removes the IDO CRDs
// (TestReleaseWithoutCRD; the other bad inputs run in parallel), and those that deploy manifests with upstream's
// resource requests (1.5 of the node's 2 CPUs: TestStagesOneByOne,
// TestUpstreamRelease), which wait until their namespace is gone, and the
// one that stops the stack's Sigstore services (TestKeylessSigstoreDown).
// Tests that change what the registry does for every client (its tokens'
// lifetime, faults in front of it) run in parallel on a registry of their
// own (ownRegistry), and the one that kills an API server mid-apply on a
// second API server of the cluster (testenv's StartSecondAPIServer). No
// test changes a blob that other images share: the registry keeps one blob
// per digest for every repository, and all planner images share their
// layer, so a test that corrupts storage corrupts an image of its own
// (testenv's Registry.CorruptImage).
package e2e
