// Package registry holds what publish and verify share about talking to an
// OCI registry: the transport (extra CA certificates, retries), the
// go-containerregistry options built from credentials, and the translation of
// registry failures into causes and fixes.
package registry
