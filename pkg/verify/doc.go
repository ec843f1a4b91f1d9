// Package verify pulls an image back from its registry the way a cluster
// will: by tag, with the given credentials, and checks that the tag resolves
// to the digest that was pushed and that its manifests and config can be read.
package verify
