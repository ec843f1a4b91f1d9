// Package buildkitd runs idopipe's own BuildKit daemon for users who have
// none: when a build names no daemon (no --buildkit-host, no
// $BUILDKIT_HOST), Managed finds buildkitd on $PATH (or at a configured
// path), starts it detached with its state under the user's cache
// directory, and later runs reuse it until `idopipe buildkit stop`.
//
// A system buildkitd answering at its default socket is preferred when
// present.
package buildkitd
