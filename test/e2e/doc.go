// Package e2e holds the end-to-end tests of idopipe. They build the idopipe
// binary (cmd/idopipe) once and run it as a user would, against the real
// local stack of internal/testenv (buildkitd, a TLS registry with GHCR's token flow, a
// one-node cluster whose kubelet really pulls and runs the Pods), started
// once for the package by TestMain.
//
// helpers_test.go holds everything the tests share (setup, the runners,
// namespace cleanup, arguments, parsing, assertions); every other file holds
// the tests of one topic. No test depends on another having run before it:
// each one cleans up the namespaces it used, and a test that changes the
// stack itself (TestAPIServerStopsMidApply) restores it before it returns.
package e2e
