package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

// slowPushProxy is a proxy in front of the registry that delays every
// blob upload, so that a push lasts long enough to redraw its progress.
func slowPushProxy(t *testing.T) (host, ca string) {
	t.Helper()
	p, err := stack.Registry.StartProxy(t.TempDir(), func(r *http.Request) (int, string, bool) {
		if r.Method == http.MethodPatch {
			time.Sleep(300 * time.Millisecond)
		}
		return 0, "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p.Host, p.CAFile
}

// onTerminal runs idopipe with stderr on a pseudo-terminal and stdout on a
// pipe, and returns what each received.
func onTerminal(t *testing.T, args ...string) (stdout, terminal string, code int) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	cmd := command(t, args...)
	cmd.Dir = t.TempDir()
	var out bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, &out, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close() // the child holds its own
	var term bytes.Buffer
	read := make(chan struct{})
	go func() { _, _ = io.Copy(&term, ptmx); close(read) }() // ends with EIO when the child exits
	err = cmd.Wait()
	<-read
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	assertNoToken(t, "the terminal", term.String())
	assertNoToken(t, "stdout", out.String())
	return out.String(), term.String(), code
}

// bytesOfTotal is the bar's "1.5/6.0 MiB".
var bytesOfTotal = regexp.MustCompile(`\d+(\.\d+)?/\d+(\.\d+)? MiB`)

// inPlace counts the carriage returns that redraw a line, not the ones the
// terminal adds before each newline.
func inPlace(s string) int { return strings.Count(strings.ReplaceAll(s, "\r\n", "\n"), "\r") }

// TestPushProgressOnTerminal: on a terminal, push progress is a bar redrawn
// in place (bytes, total, rate) that ends with the "pushed" line, while
// stdout keeps clean JSON; --progress plain, and stderr on a pipe, give
// periodic lines without a carriage return; --progress quiet gives none.
func TestPushProgressOnTerminal(t *testing.T) {
	t.Parallel()
	dir, digest := randomLayout(t, 2<<20, 3)
	host, ca := slowPushProxy(t)
	push := func(owner string, more ...string) []string {
		return append([]string{"push", "--oci-layout", dir, "--digest", digest, "--version", "1", "--jobs", "1",
			"--registry", host, "--registry-ca", ca, "--owner", owner}, more...)
	}
	tag := host + "/" + "tty-bar/planner:1"

	stdout, term, code := onTerminal(t, push("tty-bar", "-o", "json")...)
	if code != 0 {
		t.Fatalf("push on a terminal: exit %d\nstdout:\n%s\nterminal:\n%q", code, stdout, term)
	}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("stdout line is not JSON: %q", line)
		}
	}
	if n := inPlace(term); n < 3 || !strings.Contains(term, "pushing "+tag) || !bytesOfTotal.MatchString(term) ||
		!strings.Contains(term, "MiB/s") || !strings.Contains(term, "pushed "+tag+": ") {
		t.Errorf("no bar redrawn in place (%d carriage returns) ending with the pushed line:\n%q", n, term)
	}
	if strings.Contains(term, "pushing "+tag+": ") {
		t.Errorf("periodic lines on a terminal:\n%q", term)
	}
	t.Logf("terminal: %d in-place redraws", inPlace(term))

	_, term, code = onTerminal(t, push("tty-plain", "--progress", "plain")...)
	if code != 0 || inPlace(term) != 0 || !strings.Contains(term, "pushing "+host+"/tty-plain/planner:1: ") {
		t.Errorf("--progress plain on a terminal: exit %d, want lines without carriage returns:\n%q", code, term)
	}
	_, term, code = onTerminal(t, push("tty-quiet", "--progress", "quiet")...)
	if code != 0 || strings.Contains(term, "pushing") || strings.Contains(term, "pushed "+host+"/tty-quiet/planner:1: ") {
		t.Errorf("--progress quiet: exit %d, want no progress:\n%q", code, term)
	}

	r := idopipe(t, nil, push("tty-pipe")...)
	if r.code != 0 || strings.Contains(r.stderr, "\r") || !strings.Contains(r.stderr, "pushing "+host+"/tty-pipe/planner:1: ") ||
		!strings.Contains(r.stderr, "pushed "+host+"/tty-pipe/planner:1: ") {
		t.Errorf("push with stderr on a pipe: want periodic lines, no carriage return:\n%s", r)
	}
	if r := idopipe(t, nil, push("tty-pipe", "--progress", "tty")...); r.code != 2 || !strings.Contains(r.stderr, "--progress tty needs a terminal") {
		t.Errorf("--progress tty on a pipe:\n%s", r)
	}
}
