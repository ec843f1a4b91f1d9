package build

import (
	"context"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/console"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/util/progress/progressui"
	digest "github.com/opencontainers/go-digest"

	"github.com/idopipe/idopipe/pkg/fail"
)

// ProgressModes are the --progress values.
var ProgressModes = []string{"auto", "tty", "plain", "rawjson", "quiet"}

// DisplayMode resolves a --progress value for w: auto is tty when w is a
// terminal and plain otherwise (a CI log, a pipe, a file).
func DisplayMode(w io.Writer, mode string) (progressui.DisplayMode, error) {
	switch mode {
	case "", "auto":
		if isTerminal(w) {
			return progressui.TtyMode, nil
		}
		return progressui.PlainMode, nil
	case "tty":
		if !isTerminal(w) {
			return "", fail.New(fail.Usage, "use --progress plain or auto when the output is not a terminal", "--progress tty needs a terminal")
		}
		return progressui.TtyMode, nil
	case "plain", "rawjson", "quiet":
		return progressui.DisplayMode(mode), nil
	}
	return "", fail.New(fail.Usage, "use --progress "+strings.Join(ProgressModes, ", "), "unknown progress mode %q", mode)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(console.File)
	if !ok {
		return false
	}
	_, err := console.ConsoleFromFile(f)
	return err == nil
}

// display shows the status of one or more solves on one BuildKit progress
// display.
type display struct {
	ch     chan *bkclient.SolveStatus
	done   chan error
	mu     sync.RWMutex // held to send, and to close ch
	closed bool
}

func startDisplay(ctx context.Context, w io.Writer, mode string) (*display, error) {
	m, err := DisplayMode(w, mode)
	if err != nil {
		return nil, err
	}
	d, err := progressui.NewDisplay(w, m)
	if err != nil {
		return nil, fail.Wrap(fail.Usage, err, "use --progress plain", "cannot show BuildKit's progress")
	}
	disp := &display{ch: make(chan *bkclient.SolveStatus), done: make(chan error, 1)}
	go func() {
		// The display must drain until the solves end, even when ctx is
		// cancelled, or they block on it.
		_, err := d.UpdateFrom(context.WithoutCancel(ctx), disp.ch)
		disp.done <- err
	}()
	return disp, nil
}

// send shows s, unless the display is closed (a solve that BuildAll no
// longer waits for may still report).
func (d *display) send(s *bkclient.SolveStatus) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if !d.closed {
		d.ch <- s // the display reads until closed
	}
}

// note shows text as a finished step of its own on the display.
func (d *display) note(text string) {
	now := time.Now()
	d.send(&bkclient.SolveStatus{Vertexes: []*bkclient.Vertex{{
		Digest: digest.FromString(text + now.String()), Name: text, Started: &now, Completed: &now,
	}}})
}

// close ends the display; later statuses are dropped.
func (d *display) close() error {
	d.mu.Lock()
	if !d.closed {
		d.closed = true
		close(d.ch)
	}
	d.mu.Unlock()
	return <-d.done
}

// keepLines is how many output lines of each step are kept for the error
// of a failing step.
const keepLines = 6

// recorder follows one solve's status: the steps, which were cached, and
// the last output lines of each, for the error of a failing step.
type recorder struct {
	mu     sync.Mutex
	names  map[digest.Digest]string
	cached map[digest.Digest]bool
	failed map[digest.Digest]string
	logs   map[digest.Digest][]string
	part   map[digest.Digest]string // an unfinished last line
}

func newRecorder() *recorder {
	return &recorder{
		names: map[digest.Digest]string{}, cached: map[digest.Digest]bool{},
		failed: map[digest.Digest]string{}, logs: map[digest.Digest][]string{},
		part: map[digest.Digest]string{},
	}
}

// forward records every status from in and shows it on d (nil: none),
// but for the vertices named as those shown recorded: a solve repeating
// another's steps (the export after a probe, its vertices' digests other
// as its session is) shows only what is new. With a label (the platform
// of one platform's solve of a build split across builders) each step's
// name starts with "[label] ".
func (r *recorder) forward(in <-chan *bkclient.SolveStatus, d *display, shown *recorder, label string) {
	hide := map[digest.Digest]bool{}
	for s := range in {
		r.record(s)
		if shown != nil {
			s = shown.unseen(s, hide)
		}
		if d != nil && s != nil {
			d.send(labelled(s, label))
		}
	}
}

// labelled is s with "[label] " before each vertex's name (s itself
// without a label); s is left as it is.
func labelled(s *bkclient.SolveStatus, label string) *bkclient.SolveStatus {
	if label == "" || len(s.Vertexes) == 0 {
		return s
	}
	out := *s
	out.Vertexes = make([]*bkclient.Vertex, len(s.Vertexes))
	for i, v := range s.Vertexes {
		c := *v
		c.Name = "[" + label + "] " + v.Name
		out.Vertexes[i] = &c
	}
	return &out
}

// unseen is s without the vertices named as one r recorded, remembered in
// hide; nil when nothing is left.
func (r *recorder) unseen(s *bkclient.SolveStatus, hide map[digest.Digest]bool) *bkclient.SolveStatus {
	r.mu.Lock()
	names := map[string]bool{}
	for _, n := range r.names {
		names[n] = true
	}
	r.mu.Unlock()
	out := &bkclient.SolveStatus{}
	for _, v := range s.Vertexes {
		if names[v.Name] {
			hide[v.Digest] = true
		}
		if !hide[v.Digest] {
			out.Vertexes = append(out.Vertexes, v)
		}
	}
	for _, st := range s.Statuses {
		if !hide[st.Vertex] {
			out.Statuses = append(out.Statuses, st)
		}
	}
	for _, l := range s.Logs {
		if !hide[l.Vertex] {
			out.Logs = append(out.Logs, l)
		}
	}
	for _, w := range s.Warnings {
		if !hide[w.Vertex] {
			out.Warnings = append(out.Warnings, w)
		}
	}
	if len(out.Vertexes)+len(out.Statuses)+len(out.Logs)+len(out.Warnings) == 0 {
		return nil
	}
	return out
}

func (r *recorder) record(s *bkclient.SolveStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range s.Vertexes {
		r.names[v.Digest] = v.Name
		if v.Cached {
			r.cached[v.Digest] = true
		}
		if v.Error != "" {
			r.failed[v.Digest] = v.Error
		}
	}
	for _, l := range s.Logs {
		text := r.part[l.Vertex] + string(l.Data)
		lines := strings.Split(text, "\n")
		r.part[l.Vertex] = lines[len(lines)-1]
		for _, line := range lines[:len(lines)-1] {
			if line = strings.TrimRight(line, "\r"); line != "" {
				r.logs[l.Vertex] = append(r.logs[l.Vertex], line)
			}
		}
		if n := len(r.logs[l.Vertex]); n > keepLines {
			r.logs[l.Vertex] = r.logs[l.Vertex][n-keepLines:]
		}
	}
}

// counts returns the number of build steps and of cached ones; BuildKit's
// internal vertices ([internal] …, exporting, resolving) are not steps.
// Under --no-cache (noCache) BuildKit still reuses a WORKDIR's directory
// creation (the frontend sets no IgnoreCache on it) and reports it CACHED;
// it does no work that the build asked to redo, and is not counted cached,
// so that "0/N cached" says that every step ran.
func (r *recorder) counts(noCache bool) (steps, cached int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for d, name := range r.names {
		if !isStep(name) {
			continue
		}
		steps++
		if r.cached[d] && !(noCache && isWorkdir(name)) {
			cached++
		}
	}
	return steps, cached
}

// cacheErrors lists the cache exports that failed ("exporting cache to
// registry: ERROR"): BuildKit goes on after them when the export says
// ignore-error=true, and fails the build otherwise.
func (r *recorder) cacheErrors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for d, msg := range r.failed {
		if name := r.names[d]; strings.HasPrefix(name, "exporting cache to ") {
			out = append(out, name+": "+msg)
		}
	}
	slices.Sort(out)
	return out
}

// isWorkdir tells a WORKDIR step's vertex ("[build 1/4] WORKDIR /app").
func isWorkdir(name string) bool {
	_, rest, _ := strings.Cut(name, "] ")
	return strings.HasPrefix(rest, "WORKDIR ")
}

// stepName matches a Dockerfile instruction's vertex: "[2/3] RUN …",
// "[build 2/3] COPY …", "[linux/arm64 stage-1 1/1] COPY …".
var stepName = regexp.MustCompile(`^\[(?:[^\]]* )?\d+/\d+\] `)

// isStep tells a Dockerfile instruction's vertex from BuildKit's
// bookkeeping ([internal] …, [context NAME] …, exporting, cache import).
func isStep(name string) bool { return stepName.MatchString(name) }

// step returns the name and last output lines of vertex d.
func (r *recorder) step(d digest.Digest) (name string, lines []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	lines = append([]string(nil), r.logs[d]...)
	if p := strings.TrimSpace(r.part[d]); p != "" {
		lines = append(lines, p)
		if len(lines) > keepLines {
			lines = lines[len(lines)-keepLines:]
		}
	}
	return r.names[d], lines
}

// failedStep returns a step that BuildKit reported as failed, if any.
func (r *recorder) failedStep() (digest.Digest, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for d := range r.failed {
		if isStep(r.names[d]) {
			return d, true
		}
	}
	return "", false
}
