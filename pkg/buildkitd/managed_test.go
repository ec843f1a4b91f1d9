package buildkitd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/buildkitd"
	"github.com/idopipe/idopipe/pkg/commands"
	"github.com/idopipe/idopipe/pkg/fail"
)

func tools(t *testing.T) string {
	t.Helper()
	dir, err := testenv.ToolsDir()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// stateDir is a short directory (unix socket paths are limited to 108
// bytes) removed after the test.
func stateDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "idopipe-bkd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

type notes struct {
	mu    sync.Mutex
	lines []string
}

func (n *notes) add(s string) { n.mu.Lock(); n.lines = append(n.lines, s); n.mu.Unlock() }
func (n *notes) last() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.lines) == 0 {
		return ""
	}
	return n.lines[len(n.lines)-1]
}

func tinySpec(t *testing.T) build.Spec {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY f /f\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return build.Spec{Context: dir, Dockerfile: filepath.Join(dir, "Dockerfile"), Name: "t", Version: "1", Layout: filepath.Join(t.TempDir(), "oci")}
}

// TestManagedLifecycle: the first build starts the daemon and says so; a
// later run (another Managed on the same directory) reuses it; stop ends
// it, and a restart keeps its cache.
func TestManagedLifecycle(t *testing.T) {
	testenv.NeedStack(t)
	ctx := context.Background()
	dir := filepath.Join(stateDir(t), "state")
	bin := filepath.Join(tools(t), "buildkitd")
	var n notes
	newM := func() *buildkitd.Managed {
		return &buildkitd.Managed{Dir: dir, Binary: bin, Path: os.Getenv("PATH"), Notify: n.add}
	}
	m := newM()
	t.Cleanup(func() { _, _ = m.Stop(context.Background(), 10*time.Second) })

	if st, err := m.Status(ctx); err != nil || st.Running {
		t.Fatalf("status before start: %+v %v", st, err)
	}
	addr, err := m.Address(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if addr != "unix://"+filepath.Join(dir, "buildkitd.sock") || !strings.Contains(n.last(), "started idopipe's own buildkitd") {
		t.Fatalf("address %s, note %q", addr, n.last())
	}
	st, err := m.Status(ctx)
	if err != nil || !st.Running || st.PID == 0 || st.Version == "" {
		t.Fatalf("status after start: %+v %v", st, err)
	}

	// A later run of idopipe: a new Managed, the same daemon.
	m2 := newM()
	first, err := build.Build(ctx, tinySpec(t), build.WithDaemon(m2))
	if err != nil {
		t.Fatal(err)
	}
	if want := "using idopipe's own buildkitd (pid " + strconv.Itoa(st.PID) + ")"; !strings.Contains(n.last(), want) {
		t.Errorf("note %q, want %q", n.last(), want)
	}
	if len(n.lines) != 2 {
		t.Errorf("notes %q, want one line per run", n.lines)
	}

	was, err := m.Stop(ctx, 10*time.Second)
	if err != nil || !was {
		t.Fatalf("stop: %v %v", was, err)
	}
	if st, _ := m.Status(ctx); st.Running {
		t.Fatalf("running after stop: %+v", st)
	}
	if was, err := m.Stop(ctx, time.Second); was || err != nil {
		t.Errorf("second stop: %v %v", was, err)
	}

	// Restarted on the same state, the cache is still there.
	second, err := build.Build(ctx, tinySpec(t), build.WithDaemon(newM()))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(n.last(), "started") || second.Steps == 0 || second.Cached != second.Steps {
		t.Errorf("after restart: note %q, %d/%d steps cached (first build %d steps)", n.last(), second.Cached, second.Steps, first.Steps)
	}
}

// TestManagedMissing: without buildkitd the error says what to install.
func TestManagedMissing(t *testing.T) {
	testenv.NeedStack(t)
	empty := t.TempDir()
	for _, m := range []*buildkitd.Managed{
		{Dir: filepath.Join(stateDir(t), "s"), Path: empty},
		{Dir: filepath.Join(stateDir(t), "s"), Binary: filepath.Join(empty, "buildkitd"), Path: empty},
	} {
		_, err := build.Build(context.Background(), tinySpec(t), build.WithDaemon(m))
		if fail.ClassOf(err) != fail.Daemon || !strings.Contains(err.Error(), "buildkitd") || !strings.Contains(err.Error(), "install BuildKit's buildkitd") {
			t.Errorf("binary %q: %v", m.Binary, err)
		}
	}
}

// TestCLIManaged: with no --buildkit-host and no $BUILDKIT_HOST, `idopipe
// build` starts its own buildkitd from $PATH under $HOME/.cache, says so in
// one line, reuses it, and `idopipe buildkit status|stop` manage it.
func TestCLIManaged(t *testing.T) {
	testenv.NeedStack(t)
	home := stateDir(t)
	bin := filepath.Join(home, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(tools(t), "buildkitd"), filepath.Join(bin, "buildkitd")); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"HOME": home, "PATH": bin + ":" + os.Getenv("PATH")}
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := commands.Execute(context.Background(), commands.Env{Getenv: func(k string) string { return env[k] }, Stdout: &out, Stderr: &errb}, args)
		return code, out.String(), errb.String()
	}
	t.Cleanup(func() { run("buildkit", "stop") })

	if code, out, _ := run("buildkit", "status"); code != 0 || !strings.Contains(out, "not running") {
		t.Fatalf("status: %d %q", code, out)
	}
	s := tinySpec(t)
	buildArgs := []string{"build", "--source", s.Context, "--oci-layout", s.Layout, "--progress", "plain"}
	code, _, stderr := run(buildArgs...)
	if code != 0 || !strings.Contains(stderr, "idopipe: started idopipe's own buildkitd") {
		t.Fatalf("first build: exit %d\n%s", code, stderr)
	}
	code, _, stderr = run(buildArgs...)
	if code != 0 || strings.Count(stderr, "idopipe: using idopipe's own buildkitd") != 1 {
		t.Fatalf("second build: exit %d\n%s", code, stderr)
	}
	code, out, _ := run("buildkit", "status", "-o", "json")
	var res struct{ Result buildkitd.Status }
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !res.Result.Running || res.Result.Dir != filepath.Join(home, ".cache", "idopipe", "buildkitd") {
		t.Fatalf("status -o json: %d %q", code, out)
	}
	if code, out, _ := run("buildkit", "stop"); code != 0 || !strings.Contains(out, "stopped idopipe's buildkitd (pid") {
		t.Fatalf("stop: %d %q", code, out)
	}

	// Nothing installed: one line naming what to install, the build class.
	env["PATH"] = t.TempDir()
	code, _, stderr = run(buildArgs...)
	if code != int(fail.Daemon) || !strings.Contains(stderr, "error: no BuildKit daemon: buildkitd is not on $PATH") {
		t.Fatalf("no buildkitd: exit %d\n%s", code, stderr)
	}
}
