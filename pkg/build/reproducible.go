package build

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/idopipe/idopipe/pkg/fail"
)

// EpochNone turns SOURCE_DATE_EPOCH off even in a git checkout.
const EpochNone = "none"

// parseEpoch checks a --source-date-epoch value: "" (from git), "none", or
// seconds since 1970.
func parseEpoch(v string) (string, error) {
	switch v {
	case "", EpochNone:
		return v, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return "", fail.New(fail.Usage, "pass --source-date-epoch SECONDS (e.g. $(git log -1 --format=%ct)), or none",
			"bad SOURCE_DATE_EPOCH %q", v)
	}
	return strconv.FormatInt(n, 10), nil
}

// sourceDateEpoch decides the epoch of a build: the explicit value, else
// the last commit's time when the context is a git checkout, else none.
func sourceDateEpoch(s Spec, rev Revision) string {
	switch s.SourceDateEpoch {
	case EpochNone:
		return ""
	case "":
		if !rev.Time.IsZero() {
			return strconv.FormatInt(rev.Time.Unix(), 10)
		}
		return ""
	}
	v, _ := parseEpoch(s.SourceDateEpoch)
	return v
}

// reproducibleAttrs sets SOURCE_DATE_EPOCH for the frontend (which clamps
// the image config and history and, for git contexts, file times) and asks
// the exporter to rewrite layer timestamps newer than it, so that two clean
// builds of the same source give the same digest.
func reproducibleAttrs(epoch string, frontend, exporter map[string]string) {
	if epoch == "" {
		return
	}
	frontend["build-arg:SOURCE_DATE_EPOCH"] = epoch
	exporter["source-date-epoch"] = epoch
	exporter["rewrite-timestamp"] = "true"
}

// epochTime is the epoch as a time, for the created label.
func epochTime(epoch string) (time.Time, bool) {
	n, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0).UTC(), true
}

// describeContext asks vcs about the context; nothing is known without one.
func describeContext(ctx context.Context, vcs VCS, s Spec) Revision {
	if vcs == nil {
		return Revision{}
	}
	rev, err := vcs.Describe(ctx, s.Context)
	if err != nil {
		return Revision{}
	}
	return rev
}
