// Package build builds an image with BuildKit's Dockerfile frontend and
// exports it as an OCI image layout on disk.
//
// Build talks to a running buildkitd through BuildKit's Go client, streams
// BuildKit's own progress display, and returns the layout's path and the
// image digest; publish takes it from there.
package build
