// Package publish pushes an image from an OCI image layout to a registry
// under a tag, with go-containerregistry, and returns the pushed digest.
//
// go-containerregistry uploads the blobs first (skipping those the registry
// already holds) and the manifest last, so a tag never points at a partial
// image.
package publish
