// Package fail gives every idopipe error a class, and maps each class to the
// process exit code in one place.
//
// A classified error is one line: what went wrong, naming the thing, and the
// fix. Stages wrap the errors of the libraries they call with New or Wrap;
// cmd/idopipe exits with Code(err).
package fail
