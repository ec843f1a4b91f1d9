package report

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// GitHub renders events for a GitHub Actions job: each stage in a
// ::group::, failures as ::error annotations (with file and line when the
// message names a manifest document or a Dockerfile line), and around the
// wrapped reporter's own output. Summary and Outputs write the job summary
// and step outputs at the end.
type GitHub struct {
	mu   sync.Mutex
	w    io.Writer
	next Reporter
	// lines maps "file#doc" to the line the document starts on, for
	// annotations on manifest errors.
	lines func(file string, doc int) int
}

// NewGitHub wraps next; workflow commands go to w (the step's stdout).
// lines may be nil.
func NewGitHub(w io.Writer, next Reporter, lines func(string, int) int) *GitHub {
	return &GitHub{w: w, next: next, lines: lines}
}

// Mask tells the runner to hide value in all later log output. It must be
// called before anything else prints the value; the runner consumes the
// command, so the value never appears in the log.
func (g *GitHub) Mask(value string) {
	if value == "" {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	fmt.Fprintf(g.w, "::add-mask::%s\n", escapeData(value))
}

// Report implements Reporter.
func (g *GitHub) Report(e Event) {
	g.mu.Lock()
	if e.Kind == StageStart {
		fmt.Fprintf(g.w, "::group::%s\n", escapeData(e.Stage))
	}
	g.mu.Unlock()
	g.next.Report(e)
	g.mu.Lock()
	defer g.mu.Unlock()
	switch e.Kind {
	case StageDone:
		fmt.Fprintln(g.w, "::endgroup::")
	case StageFail:
		fmt.Fprintln(g.w, "::endgroup::")
		props := "title=" + escapeProp("idopipe "+e.Stage)
		if file, line := g.location(e.Message); file != "" {
			props += ",file=" + escapeProp(file) + ",line=" + strconv.Itoa(line)
		}
		fmt.Fprintf(g.w, "::error %s::%s\n", props, escapeData(e.Message))
	case Warning:
		fmt.Fprintf(g.w, "::warning::%s\n", escapeData(e.Message))
	}
}

var (
	docRef      = regexp.MustCompile(`([^\s:()]+\.ya?ml)#(\d+)`)
	dockerfileL = regexp.MustCompile(`([^\s:()]*Dockerfile[^\s:()]*):(\d+)`)
)

// location finds "file.yaml#N" (a manifest document) or "Dockerfile:N" in
// a message.
func (g *GitHub) location(msg string) (string, int) {
	if m := docRef.FindStringSubmatch(msg); m != nil {
		doc, _ := strconv.Atoi(m[2])
		line := 1
		if g.lines != nil {
			line = g.lines(m[1], doc)
		}
		return m[1], line
	}
	if m := dockerfileL.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[2])
		return m[1], line
	}
	return "", 0
}

// AppendFile appends text to the file at path (the value of $GITHUB_OUTPUT
// or $GITHUB_STEP_SUMMARY); an empty path writes nothing.
func AppendFile(p, text string) error {
	if p == "" {
		return nil
	}
	f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.WriteString(f, text)
	return err
}

// Outputs formats step outputs (key=value lines; values are one line).
func Outputs(kv map[string]string) string {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, strings.ReplaceAll(kv[k], "\n", " "))
	}
	return b.String()
}

func escapeData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func escapeProp(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}
