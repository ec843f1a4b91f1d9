// Package pipeline runs a release as a short list of stages, one file each:
//
//	validate     validate.go  read and check every input, asking nobody (always)
//	build        build.go     every image with BuildKit (Deps.Builder)
//	checks       checks.go    registry and cluster, changing nothing; alongside the build
//	resolve      resolve.go   when nothing is built: the digests the registry has
//	push         push.go      every image, signed with --sign (Deps.Publisher, Deps.Signer)
//	verify-pull  verify.go    every image pulled back; the signature gate (gate.go)
//	plan         plan.go      --dry-run and diff: the server-side dry run, nothing written
//	secret       secret.go    namespace and lock, CRDs, the plan, the pull Secret
//	apply        apply.go     the plan carried out, the inventory written
//	wait         wait.go      every object current, or a diagnosed failure
//
// The list, its order and when each stage runs are one table, in stage.go;
// Release, Deploy and Push (release.go) run the rows that apply, through
// Run. The images (the main one and the --extra-image ones) are one list
// each stage walks. The stages reach BuildKit, the registry and the
// cluster only through the small interfaces of deps.go, so that this
// package's own logic is tested without them (pipeline_test.go); the
// collaborators are made in pkg/commands/wire.go. Options (options.go) are
// values only.
package pipeline
