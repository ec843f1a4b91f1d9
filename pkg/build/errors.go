package build

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/moby/buildkit/solver/errdefs"
	digest "github.com/opencontainers/go-digest"

	"github.com/idopipe/idopipe/pkg/fail"
)

// explain turns a failed solve into one line naming what failed and where:
// the step and its last output lines for a failing RUN, the Dockerfile's
// file and line for a syntax error, BuildKit's message otherwise.
func explain(ctx context.Context, s Spec, rec *recorder, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	what := s.Name + ":" + s.Version
	msg := oneLine(unwrapGRPC(err).Error())
	loc := sourceLocation(s, err)

	if strings.Contains(msg, "401 Unauthorized") || strings.Contains(msg, "403 Forbidden") {
		return fail.Wrap(fail.Credentials, errors.New(msg),
			"set $GITHUB_ACTOR and $GITHUB_TOKEN (a token with read:packages and write:packages) or `docker login` to that registry",
			"build of %s: the registry refused the credentials", what)
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
