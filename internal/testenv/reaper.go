package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// A node's stack may end without its Stop running: a panic in a test, a
// SIGKILL, a Ctrl-C that kills the test binary. The reaper is a second
// process (this binary again, see init) that holds the node lock with its
// parent and undoes the node when its parent goes away without saying it
// has done so itself. Because it holds the lock until then, no other stack
// can start a node before the host is clean.
const reaperEnv = "IDOPIPE_NODE_REAPER"

func init() {
	if os.Getenv(reaperEnv) == "1" {
		runReaper()
	}
}

// runReaper waits for its parent: a byte "d" on stdin means the parent
// cleaned up; end of file without it means the parent died. Then it kills
// every process of the parent's stack (those whose command line names the
// stack's directory: etcd, kube-apiserver and the others), undoes the node
// and removes the stack's directory.
func runReaper() {
	b := make([]byte, 1)
	n, _ := os.Stdin.Read(b)
	if n == 1 && b[0] == 'd' {
		os.Exit(0)
	}
	if dir := os.Getenv(reaperDirEnv); dir != "" {
		killNaming(dir)
	}
	cleanupLeftovers()
	if dir := os.Getenv(reaperDirEnv); dir != "" && os.Getenv("IDOPIPE_KEEP_STACK") == "" {
		_ = os.RemoveAll(dir)
	}
	os.Exit(0)
}

const reaperDirEnv = "IDOPIPE_STACK_DIR"

type reaper struct {
	lock *os.File
	w    *os.File
	cmd  *exec.Cmd
}

// startReaper takes the machine's node lock (waiting for another stack's
// node to stop, unless held has it) and starts the reaper, which shares
// the lock; stackDir is the directory of the stack whose processes it
// kills if need be.
func startReaper(ctx context.Context, stackDir string, held *MachineLocks) (*reaper, error) {
	f, err := held.take(ctx, nodeLock)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		f.Close()
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		f.Close()
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), reaperEnv+"=1", reaperDirEnv+"="+stackDir)
	cmd.Stdin = r
	cmd.ExtraFiles = []*os.File{f} // keeps the lock held while it runs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		f.Close()
		return nil, fmt.Errorf("start the node reaper: %w", err)
	}
	r.Close()
	return &reaper{lock: f, w: w, cmd: cmd}, nil
}

// lockFile takes the machine-wide lock path (flock, exclusive), waiting
// for its holder; closing the file (and every process that inherited it
// exiting) releases it.
func lockFile(ctx context.Context, path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for %s: %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// done tells the reaper the node is cleaned up, waits for it to exit and
// releases the lock.
func (r *reaper) done() {
	if r == nil {
		return
	}
	_, _ = r.w.Write([]byte("d"))
	r.w.Close()
	_ = r.cmd.Wait()
	r.lock.Close()
}
