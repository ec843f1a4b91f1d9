// Package creds finds the registry credentials (a username and a personal
// access token) and keeps the token out of every output.
//
// The token is held as a Secret, whose String, GoString, Format and JSON forms
// are all "[redacted]": only Reveal returns the value, and only the code that
// puts it on the wire (the registry client, the cluster pull Secret) calls it.
package creds
