package buildkitd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	bkclient "github.com/moby/buildkit/client"

	"github.com/idopipe/idopipe/pkg/fail"
)

// installFix says what to install when there is no buildkitd.
const installFix = "install BuildKit's buildkitd (a release from github.com/moby/buildkit, on $PATH or --buildkitd-path) and runc, " +
	"or point --buildkit-host / $BUILDKIT_HOST at a running daemon"

// Managed is idopipe's own buildkitd. The zero value is not usable: set
// Dir, or use New.
type Managed struct {
	// Dir holds the daemon's state: root, socket, config, log and pid file.
	Dir string
	// Binary is the buildkitd to start; "" looks for buildkitd on Path.
	Binary string
	// Path is the search path for buildkitd and runc ($PATH; /usr/sbin and
	// /sbin are added, where Debian puts runc).
	Path string
	// System is a daemon address preferred when it answers (the system
	// buildkitd's default socket); "" skips it.
	System string
	// Notify is told, in one line, which daemon a build uses.
	Notify func(string)
}

// DefaultDir is the managed daemon's state directory under the user's
// cache directory cacheDir ($XDG_CACHE_HOME, else $HOME/.cache, resolved by
// the caller): cacheDir/idopipe/buildkitd. An empty cacheDir is an error.
func DefaultDir(cacheDir string) (string, error) {
	if cacheDir != "" {
		return filepath.Join(cacheDir, "idopipe", "buildkitd"), nil
	}
	return "", fail.New(fail.Usage, "set $HOME or $XDG_CACHE_HOME, or pass --buildkit-host", "no cache directory for idopipe's own buildkitd")
}

// Socket is the daemon's unix socket.
func (m *Managed) Socket() string { return filepath.Join(m.Dir, "buildkitd.sock") }

// Addr is the daemon's address.
func (m *Managed) Addr() string { return "unix://" + m.Socket() }

func (m *Managed) pidFile() string { return filepath.Join(m.Dir, "buildkitd.pid") }
func (m *Managed) logFile() string { return filepath.Join(m.Dir, "buildkitd.log") }

func (m *Managed) notify(format string, args ...any) {
	if m.Notify != nil {
		m.Notify(fmt.Sprintf(format, args...))
	}
}

// Address implements build.Daemon: the system daemon when it answers, else
// idopipe's own, started if it is not running.
func (m *Managed) Address(ctx context.Context) (string, error) {
	if m.System != "" {
		if sock, ok := strings.CutPrefix(m.System, "unix://"); ok {
			if _, err := os.Stat(sock); err == nil && answers(ctx, m.System) == nil {
				m.notify("using the system buildkitd at %s", m.System)
				return m.System, nil
			}
		}
	}
	st, err := m.Start(ctx)
	if err != nil {
		return "", err
	}
	if st.Started {
		m.notify("started idopipe's own buildkitd (pid %d) at %s; it stays up for later builds, `idopipe buildkit stop` ends it", st.PID, st.Address)
	} else {
		m.notify("using idopipe's own buildkitd (pid %d) at %s", st.PID, st.Address)
	}
	return st.Address, nil
}

// Status is the managed daemon's state.
type Status struct {
	Running bool   `json:"running"`
	Started bool   `json:"started,omitempty"` // by this call
	PID     int    `json:"pid,omitempty"`
	Address string `json:"address"`
	Dir     string `json:"dir"`
	Version string `json:"version,omitempty"`
	Binary  string `json:"binary,omitempty"`
}

// Status reports whether the daemon runs and answers.
func (m *Managed) Status(ctx context.Context) (Status, error) {
	st := Status{Address: m.Addr(), Dir: m.Dir}
	pid, alive := m.pid()
	if !alive {
		return st, nil
	}
	st.PID = pid
	v, err := version(ctx, st.Address)
	if err != nil {
		return st, nil // a process, but not (yet) answering
	}
	st.Running, st.Version = true, v
	st.Binary, _ = os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return st, nil
}

// Start starts the daemon unless it runs already, and waits until it
// answers. Concurrent runs of idopipe start one daemon between them.
func (m *Managed) Start(ctx context.Context) (Status, error) {
	if m.Dir == "" {
		return Status{}, fail.New(fail.Internal, "", "no state directory for idopipe's own buildkitd")
	}
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		return Status{}, fail.Wrap(fail.Daemon, err, "make the user's cache directory writable, or pass --buildkit-host", "cannot create %s for idopipe's own buildkitd", m.Dir)
	}
	unlock, err := lockFile(ctx, filepath.Join(m.Dir, "lock"))
	if err != nil {
		return Status{}, err
	}
	defer unlock()
	if st, _ := m.Status(ctx); st.Running {
		return st, nil
	}
	bin, runc, err := m.binaries()
	if err != nil {
		return Status{}, err
	}
	if err := m.writeConfig(); err != nil {
		return Status{}, fail.Wrap(fail.Daemon, err, "", "cannot write the config of idopipe's own buildkitd in %s", m.Dir)
	}
	_ = os.Remove(m.Socket()) // left by a daemon that died
	logf, err := os.OpenFile(m.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return Status{}, fail.Wrap(fail.Daemon, err, "", "cannot open %s", m.logFile())
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--config", filepath.Join(m.Dir, "buildkitd.toml"))
	cmd.Dir = m.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(runc)+string(os.PathListSeparator)+m.searchPath())
	// Its own session: the daemon outlives this run and its terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Status{}, fail.Wrap(fail.Daemon, err, installFix, "cannot start %s", bin)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := os.WriteFile(m.pidFile(), []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		_ = cmd.Process.Kill()
		return Status{}, fail.Wrap(fail.Daemon, err, "", "cannot write %s", m.pidFile())
	}
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for {
		if _, err := os.Stat(m.Socket()); err == nil && answers(ctx, m.Addr()) == nil {
			st, err := m.Status(ctx)
			st.Started, st.Binary = true, bin
			return st, err
		}
		select {
		case err := <-exited:
			_ = os.Remove(m.pidFile())
			return Status{}, fail.New(fail.Daemon, "see "+m.logFile()+"; "+installFix,
				"idopipe's own buildkitd (%s) exited while starting (%v): %s", bin, err, lastLine(m.logFile()))
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			return Status{}, ctx.Err()
		case <-deadline.C:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			return Status{}, fail.New(fail.Daemon, "see "+m.logFile(), "idopipe's own buildkitd did not answer at %s within a minute", m.Addr())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop ends the daemon (SIGTERM, SIGKILL after grace) and reports whether
// it was running.
func (m *Managed) Stop(ctx context.Context, grace time.Duration) (bool, error) {
	pid, alive := m.pid()
	if !alive {
		_ = os.Remove(m.pidFile())
		return false, nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return false, fail.Wrap(fail.Daemon, err, "", "cannot stop idopipe's buildkitd (pid %d)", pid)
	}
	deadline := time.Now().Add(grace)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(grace)
		}
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	_ = os.Remove(m.pidFile())
	return true, nil
}

// pid returns the daemon's pid from the pid file, and whether that process
// is alive and is a buildkitd (not a recycled pid).
func (m *Managed) pid() (int, bool) {
	b, err := os.ReadFile(m.pidFile())
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || !processAlive(pid) {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "buildkitd") {
		return 0, false
	}
	return pid, true
}

// processAlive tells whether pid runs (a zombie does not count).
func processAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses: "pid (comm) S …".
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

func (m *Managed) searchPath() string {
	p := m.Path
	for _, extra := range []string{"/usr/sbin", "/sbin"} {
		if !strings.Contains(string(os.PathListSeparator)+p+string(os.PathListSeparator), string(os.PathListSeparator)+extra+string(os.PathListSeparator)) {
			p += string(os.PathListSeparator) + extra
		}
	}
	return strings.TrimPrefix(p, string(os.PathListSeparator))
}

// binaries finds buildkitd and the runc it runs steps with.
func (m *Managed) binaries() (bin, runc string, err error) {
	bin = m.Binary
	if bin == "" {
		if bin, err = lookPath("buildkitd", m.searchPath()); err != nil {
			return "", "", fail.New(fail.Daemon, installFix, "no BuildKit daemon: buildkitd is not on $PATH and no --buildkit-host or $BUILDKIT_HOST is set")
		}
	} else if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", "", fail.New(fail.Daemon, installFix, "--buildkitd-path %s is not an executable buildkitd", bin)
	}
	if runc, err = lookPath("runc", m.searchPath()); err != nil {
		return "", "", fail.New(fail.Daemon, "install runc (Debian: apt-get install runc), or point --buildkit-host at a running daemon",
			"idopipe's own buildkitd needs runc, which is not on $PATH")
	}
	return bin, runc, nil
}

func lookPath(name, path string) (string, error) {
	for dir := range strings.SplitSeq(path, string(os.PathListSeparator)) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func (m *Managed) writeConfig() error {
	cfg := fmt.Sprintf(`# idopipe's own buildkitd; idopipe rewrites this file when it starts it.
root = %q
[grpc]
  address = [%q]
[worker.oci]
  enabled = true
  gc = true
[worker.containerd]
  enabled = false
`, filepath.Join(m.Dir, "root"), m.Addr())
	return os.WriteFile(filepath.Join(m.Dir, "buildkitd.toml"), []byte(cfg), 0o600)
}

// answers checks that a daemon at addr serves requests.
func answers(ctx context.Context, addr string) error {
	_, err := version(ctx, addr)
	return err
}

func version(ctx context.Context, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := bkclient.New(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	info, err := c.Info(ctx)
	if err != nil {
		return "", err
	}
	return info.BuildkitVersion.Version, nil
}

// lockFile takes an exclusive lock on path, waiting for another run of
// idopipe that holds it.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fail.Wrap(fail.Daemon, err, "", "cannot open %s", path)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fail.Wrap(fail.Daemon, err, "", "cannot lock %s", path)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// lastLine is the last non-empty line of a log file, for one-line errors.
func lastLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
