// Package build builds images with BuildKit's Dockerfile frontend and
// exports them as an OCI image layout on disk.
//
// Build builds one Spec; BuildAll builds several concurrently on one
// BuildKit client (one connection to one daemon), each in its own build
// session, into one or more layouts. Both stream BuildKit's own progress
// display and return, per image, the digest, the platform images and the
// attestation manifests apart; publish takes it from there. On a
// PlatformRouter (BuildKit in a cluster with a builder per platform) a
// multi-platform build is solved per platform, each on its own builder,
// and the platform images are joined into one index.
//
// The files follow the concerns, each with at most one small interface:
//
//	spec.go          Spec, Result and the checks made before any daemon is contacted
//	client.go        which daemon (Daemon), mTLS (TLS), connection helpers
//	solve.go, all.go a Spec as a SolveOpt; Build and BuildAll
//	platform.go      --platform parsing (one image index for several)
//	reproducible.go  SOURCE_DATE_EPOCH and the exporter's timestamp rewriting
//	vcs.go           the commit of a checkout or git URL (VCS, Git)
//	labels.go        the OCI labels filled from version control
//	provenance.go    --provenance, and attestation manifests told from platforms
//	secrets.go       --secret, served to RUN --mount=type=secret
//	auth.go          registry credentials for buildkitd (Credentials)
//	cache.go         --cache-from / --cache-to (registry, local, inline)
//	contexts.go      named build contexts (OCI layouts, directories), any image form
//	layout.go        the OCI layout written to, shared by concurrent builds
//	export.go        an unchanged rebuild's export skipped (probe, export key)
//	route.go         a build's platforms on their own builders (PlatformRouter)
//	join.go          the platform exports joined into one image index
//	progress.go      --progress modes and the status recorder (steps, cached, logs)
//	errors.go        one-line errors: the failing step and its output, FILE:LINE
package build
