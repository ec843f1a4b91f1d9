// Package pipeline composes the stages of a release: validate, build, push,
// verify-pull, secret, apply and wait. Each stage is a call into the package
// named after it; this package only orders them, hands each stage's result to
// the next, and reports their start, end and outcome as events.
package pipeline
