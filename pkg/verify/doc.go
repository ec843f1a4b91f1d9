// Package verify pulls an image back from its registry the way a cluster
// will: by tag, with the given credentials, and checks that the tag resolves
// to the digest that was pushed and that its manifests and config can be read.
// Pull and its options serve the commands; a Verifier (New) holds the
// registry access for the pipeline, which calls its Pull and Signed
// through an interface.
package verify
