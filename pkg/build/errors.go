package build

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/distribution/reference"
	"github.com/moby/buildkit/solver/errdefs"
	digest "github.com/opencontainers/go-digest"

	"github.com/idopipe/idopipe/pkg/fail"
)

// explain turns a failed solve into one line naming what failed and where:
// the step and its last output lines for a failing RUN, the Dockerfile's
// file and line for a syntax error, BuildKit's message otherwise.
func explain(ctx context.Context, s Spec, rec *recorder, auth *authServer, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	what := s.Name + ":" + s.Version
	msg := oneLine(unwrapGRPC(err).Error())
	loc := sourceLocation(s, err)

	if code := refusal.FindString(msg); code != "" {
		return refused(what, msg, code, auth)
	}
	if m := tokenDenied.FindStringSubmatch(msg); m != nil {
		return refused(what, msg, fmt.Sprintf("%q at its token endpoint", m[1]), auth)
	}
	if ref, cause, ok := baseImageFailure(msg); ok {
		return unreachableImage(what, ref, cause)
	}

	if lostConnection(err) {
		return fail.Wrap(fail.Daemon, errors.New(msg), "check that buildkitd is up (a builder in a cluster: its Pods), then run again",
			"build of %s: the connection to BuildKit was lost", what)
	}

	if partialIngest(err) {
		// A build interrupted while BuildKit copied a layer from a local OCI
		// layout leaves a partial ingest behind; BuildAll clears it once
		// (content garbage collection) and retries, so this is reached only
		// when that did not help.
		return fail.Wrap(fail.Daemon, errors.New(msg),
			"an interrupted build left a partial layer copy in buildkitd: run `buildctl prune` or restart buildkitd (idopipe buildkit stop)",
			"build of %s: BuildKit cannot resume a layer copy", what)
	}

	var ve *errdefs.VertexError
	d, failed := digest.Digest(""), false
	if errors.As(err, &ve) {
		d, failed = digest.Digest(ve.Digest), true
	} else {
		d, failed = rec.failedStep()
	}
	if failed {
		if name, lines := rec.step(d); name != "" {
			out := ""
			if len(lines) > 0 {
				out = "; last output: " + strings.Join(lines, " | ")
			}
			where := ""
			if loc != "" {
				where = " (" + loc + ")"
			}
			return fail.Wrap(fail.Build, errors.New(msg+out), "fix the step, or see BuildKit's output above",
				"build of %s failed at step %s%s", what, name, where)
		}
	}
	if loc != "" {
		return fail.Wrap(fail.Build, errors.New(msg), "fix the Dockerfile at "+loc, "build of %s failed: %s", what, loc)
	}
	return fail.Wrap(fail.Build, errors.New(msg), "see BuildKit's output above", "build of %s failed", what)
}

// sourceLocation is FILE:LINE of the innermost Dockerfile location BuildKit
// attached to err, with the Dockerfile named by the path the user gave.
func sourceLocation(s Spec, err error) string {
	srcs := errdefs.Sources(err)
	for i := len(srcs) - 1; i >= 0; i-- {
		src := srcs[i]
		if src.Info == nil || len(src.Ranges) == 0 {
			continue
		}
		name := src.Info.Filename
		if s.Dockerfile != "" && !IsGitURL(s.Context) && filepath.Base(s.Dockerfile) == filepath.Base(name) {
			name = s.Dockerfile
		}
		return fmt.Sprintf("%s:%d", name, src.Ranges[0].Start.Line)
	}
	return ""
}

// noise is BuildKit's wrapping that says nothing to the user.
var noise = regexp.MustCompile(`^failed to solve: |failed to compute cache key: failed to calculate checksum of ref [^ :]+::[^ :]+: `)

func oneLine(s string) string {
	return noise.ReplaceAllString(strings.Join(strings.Fields(s), " "), "")
}

// refusal is a registry's answer that it wants other credentials.
var refusal = regexp.MustCompile(`\b(401 Unauthorized|403 Forbidden)\b`)

// tokenDenied is BuildKit's message when a registry's token endpoint
// refuses the credentials with an error body and BuildKit does not give the
// status: GHCR's 403 {"errors":[{"code":"DENIED","message":"denied"}]} to a
// wrong, revoked or expired PAT reads "failed to fetch oauth token: denied:
// denied".
var tokenDenied = regexp.MustCompile(`failed to fetch oauth token: ((?:denied|unauthorized): [^:]+)`)

// urlHost is the host of the first URL in a message.
var urlHost = regexp.MustCompile(`https?://([^/\s"]+)`)

// refused explains a registry's 401 or 403: which registry, which
// credentials it was given (their source, or none), and how to fix that.
func refused(what, msg, code string, auth *authServer) error {
	host := ""
	if auth != nil {
		for _, h := range auth.hosts() {
			if strings.Contains(msg, h) {
				host = h
			}
		}
	}
	if host == "" {
		if m := urlHost.FindStringSubmatch(msg); m != nil {
			host = m[1]
		}
	}
	if host == "" && auth != nil {
		// A message without the host (BuildKit's "failed to fetch oauth
		// token: denied: denied"): the one host given credentials.
		var given []string
		for _, h := range auth.hosts() {
			if src, _ := auth.servedTo(h); src != "" {
				given = append(given, h)
			}
		}
		if len(given) == 1 {
			host = given[0]
		}
	}
	if host == "" {
		host = "the registry"
	}
	source, asked := "", false
	if auth != nil {
		source, asked = auth.servedTo(host)
	}
	switch {
	case source != "":
		return fail.Wrap(fail.Credentials, errors.New(msg),
			"check "+source+": it must be valid for "+host+" and allowed to read there (read:packages), and to write (write:packages) for a cache export",
			"build of %s: registry %s answered %s to %s", what, host, code, source)
	case asked || auth != nil:
		return fail.Wrap(fail.Credentials, errors.New(msg), auth.hint(host),
			"build of %s: registry %s answered %s, and idopipe has no credentials for it", what, host, code)
	}
	return fail.Wrap(fail.Credentials, errors.New(msg), "give idopipe credentials for the registry",
		"build of %s: the registry answered %s", what, code)
}

// resolveFailure is BuildKit's message when it cannot get an image's
// manifest or config: from a registry, or from an OCI layout of a named
// context.
var resolveFailure = regexp.MustCompile(`(?:failed to resolve source metadata for|failed to load cache key: .*?|failed to do request: .*? for) ([^\s:]+(?::[0-9]+)?[^\s:]*(?::[^\s:@]+)?(?:@sha256:[0-9a-f]{64})?): (.*)$`)

// baseImageFailure tells a failure to get a base (or COPY --from) image,
// the image and the cause.
func baseImageFailure(msg string) (ref, cause string, ok bool) {
	m := resolveFailure.FindStringSubmatch(msg)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// unreachableImage explains an image that could not be got: it names the
// image and its registry, and the class says whether the registry did not
// answer or does not have it. The Dockerfile is not at fault.
func unreachableImage(what, ref, cause string) error {
	host := "docker.io"
	if named, err := reference.ParseNormalizedNamed(ref); err == nil {
		host = reference.Domain(named)
	}
	class, fix := fail.Registry, "check that "+host+" is reachable from buildkitd (DNS, proxy, TLS), or give the image as --build-context NAME=oci-layout:///DIR"
	if strings.Contains(cause, "not found") {
		class, fix = fail.NotFound, "check the image's name and tag on "+host+", or give it as --build-context NAME=oci-layout:///DIR"
	}
	return fail.Wrap(class, errors.New(cause), fix, "build of %s: cannot get image %s from registry %s", what, ref, host)
}
