package report

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// Kind is what an Event reports.
type Kind string

// The kinds of event.
const (
	StageStart Kind = "stage-start"
	StageDone  Kind = "stage-done"
	StageFail  Kind = "stage-fail"
	Info       Kind = "info"
	Warning    Kind = "warning"
	Diff       Kind = "diff" // a unified diff, printed as is
	Result     Kind = "result"
)

// Event is one thing that happened.
type Event struct {
	Time     time.Time         `json:"time"`
	Kind     Kind              `json:"kind"`
	Stage    string            `json:"stage,omitempty"`
	Message  string            `json:"message,omitempty"`
	Duration time.Duration     `json:"-"`
	Seconds  float64           `json:"seconds,omitempty"`
	Fields   map[string]string `json:"fields,omitempty"`
	ExitCode *int              `json:"exitCode,omitempty"`
}

// Reporter receives events. Implementations are safe for concurrent use.
type Reporter interface {
	Report(Event)
}

// Discard drops every event.
var Discard Reporter = discard{}

type discard struct{}

func (discard) Report(Event) {}

// Redactor removes secrets from text; creds.Secret.Redact is one.
type Redactor func(string) string

// Human writes a short line per event.
type Human struct {
	mu     sync.Mutex
	w      io.Writer
	redact Redactor
}

// NewHuman renders events for people.
func NewHuman(w io.Writer, redact Redactor) *Human { return &Human{w: w, redact: redact} }

// Report implements Reporter.
func (h *Human) Report(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var line string
	switch e.Kind {
	case StageStart:
		line = fmt.Sprintf("==> %s", e.Stage)
		if e.Message != "" {
			line += ": " + e.Message
		}
	case StageDone:
		line = fmt.Sprintf("✓ %s (%s)", e.Stage, round(e.Duration))
		if e.Message != "" {
			line += " " + e.Message
		}
	case StageFail:
		line = fmt.Sprintf("✗ %s (%s): %s", e.Stage, round(e.Duration), e.Message)
	case Warning:
		line = "warning: " + e.Message
	case Result, Diff:
		line = strings.TrimRight(e.Message, "\n")
	default:
		line = "    " + e.Message
	}
	if len(e.Fields) > 0 && e.Kind != Result {
		line += " " + formatFields(e.Fields)
	}
	if h.redact != nil {
		line = h.redact(line)
	}
	fmt.Fprintln(h.w, line)
}

// JSON writes one JSON object per event.
type JSON struct {
	mu     sync.Mutex
	enc    *json.Encoder
	redact Redactor
}

// NewJSON renders events as JSON lines.
func NewJSON(w io.Writer, redact Redactor) *JSON {
	return &JSON{enc: json.NewEncoder(w), redact: redact}
}

// Report implements Reporter.
func (j *JSON) Report(e Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if e.Duration > 0 {
		e.Seconds = e.Duration.Seconds()
	}
	if j.redact != nil {
		e.Message = j.redact(e.Message)
		for k, v := range e.Fields {
			e.Fields[k] = j.redact(v)
		}
	}
	_ = j.enc.Encode(e)
}

func formatFields(f map[string]string) string {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + f[k]
	}
	return strings.Join(parts, " ")
}

func round(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}
