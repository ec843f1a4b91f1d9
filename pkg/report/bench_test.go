package report

import (
	"io"
	"strings"
	"testing"
	"time"
)

// Microbenchmarks of the event path every stage goes through: one event
// rendered for people or as a JSON line, with the token redacted. They guard
// against regressions; `make bench` records their figures. No timing is
// asserted.
//
//	go test -run XXX -bench . -benchmem ./pkg/report

const benchToken = "ghp_benchTOKEN0123456789abcdef0123456789"

func benchRedact(s string) string { return strings.ReplaceAll(s, benchToken, "[redacted]") }

// benchEvents is what a release reports: a start and a done line per stage,
// the apply stage's per-object lines and a warning with fields.
func benchEvents() []Event {
	now := time.Unix(1_700_000_000, 0)
	var evs []Event
	for _, st := range []string{"validate", "build", "push", "verify-pull", "secret", "apply", "wait"} {
		evs = append(evs,
			Event{Time: now, Kind: StageStart, Stage: st},
			Event{Time: now, Kind: StageDone, Stage: st, Duration: 1234 * time.Millisecond,
				Message: "ghcr.io/my-org/planner:0.4.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"})
	}
	for _, obj := range []string{"ConfigMap/ido/planner-configmap", "ServiceAccount/ido/planner-service-account", "ClusterRole/planner-role", "Pod/ido/planner"} {
		evs = append(evs, Event{Time: now, Kind: Info, Stage: "apply", Message: obj + " unchanged"})
	}
	evs = append(evs, Event{Time: now, Kind: Warning, Message: "token file .github-token is readable by others",
		Fields: map[string]string{"mode": "0644", "path": ".github-token"}})
	return evs
}

func benchReporter(b *testing.B, r Reporter) {
	evs := benchEvents()
	b.ReportAllocs()
	for b.Loop() {
		for _, e := range evs {
			r.Report(e)
		}
	}
}

func BenchmarkHuman(b *testing.B) { benchReporter(b, NewHuman(io.Discard, nil)) }

func BenchmarkHumanRedacted(b *testing.B) { benchReporter(b, NewHuman(io.Discard, benchRedact)) }

func BenchmarkJSON(b *testing.B) { benchReporter(b, NewJSON(io.Discard, nil)) }

func BenchmarkJSONRedacted(b *testing.B) { benchReporter(b, NewJSON(io.Discard, benchRedact)) }
