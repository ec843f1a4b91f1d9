package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// MachineLocks holds the two machine-wide locks a stack takes, the node's
// (nodeLock: one kubelet node per machine) and the timestamp authority's
// (tsaLock: one TSA per machine), across stacks. A stack started with
// Parts.Held shares them instead of waiting, and they stay held when it
// stops: the host tests read the host's state before a node starts and
// after it stopped with no other package's node in between, and no other
// package (the end-to-end tests, which go test may run beside them) takes the
// node in the gap between two of their stacks and keeps it for minutes.
type MachineLocks struct {
	node, tsa *os.File
}

// machineLocksEnv passes held locks to a child process (see Pass).
const machineLocksEnv = "IDOPIPE_MACHINE_LOCK_FDS"

// HoldMachineLocks waits for both machine locks and holds them until
// Release. It takes them in the order Start does (the TSA's, then the
// node's), so that it and a stack starting elsewhere never hold one each
// while waiting for the other.
func HoldMachineLocks(ctx context.Context) (*MachineLocks, error) {
	tsa, err := lockFile(ctx, tsaLock)
	if err != nil {
		return nil, err
	}
	node, err := lockFile(ctx, nodeLock)
	if err != nil {
		tsa.Close()
		return nil, err
	}
	return &MachineLocks{node: node, tsa: tsa}, nil
}

// Release lets the locks go (a stack still running on them keeps them).
func (m *MachineLocks) Release() {
	if m == nil {
		return
	}
	m.node.Close()
	m.tsa.Close()
}

// Pass hands the held locks to cmd, a child that gets them back with
// InheritedMachineLocks: they are one lock with the parent's, so the child
// starts stacks without waiting for its parent.
func (m *MachineLocks) Pass(cmd *exec.Cmd) {
	first := 3 + len(cmd.ExtraFiles)
	cmd.ExtraFiles = append(cmd.ExtraFiles, m.node, m.tsa)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d,%d", machineLocksEnv, first, first+1))
}

// InheritedMachineLocks returns the locks a parent passed with Pass, or
// nil. It checks that each descriptor is the lock file it should be, and
// unsets the variable so that this process's own children do not read it.
func InheritedMachineLocks() (*MachineLocks, error) {
	v := os.Getenv(machineLocksEnv)
	if v == "" {
		return nil, nil
	}
	_ = os.Unsetenv(machineLocksEnv)
	fds := strings.Split(v, ",")
	if len(fds) != 2 {
		return nil, fmt.Errorf("%s=%q: want two descriptors", machineLocksEnv, v)
	}
	files := make([]*os.File, 2)
	for i, path := range []string{nodeLock, tsaLock} {
		fd, err := strconv.Atoi(fds[i])
		if err != nil {
			return nil, fmt.Errorf("%s=%q: %w", machineLocksEnv, v, err)
		}
		var got, want syscall.Stat_t
		if err := syscall.Fstat(fd, &got); err != nil {
			return nil, fmt.Errorf("%s: descriptor %d: %w", machineLocksEnv, fd, err)
		}
		if err := syscall.Stat(path, &want); err != nil || got.Dev != want.Dev || got.Ino != want.Ino {
			return nil, fmt.Errorf("%s: descriptor %d is not %s", machineLocksEnv, fd, path)
		}
		files[i] = os.NewFile(uintptr(fd), path)
	}
	return &MachineLocks{node: files[0], tsa: files[1]}, nil
}

// take is path's lock for one stack: a second descriptor of the held lock
// when m holds it (closing it does not release m's), else the lock itself,
// waited for.
func (m *MachineLocks) take(ctx context.Context, path string) (*os.File, error) {
	var held *os.File
	if m != nil {
		switch path {
		case nodeLock:
			held = m.node
		case tsaLock:
			held = m.tsa
		}
	}
	if held == nil {
		return lockFile(ctx, path)
	}
	sc, err := held.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd uintptr
	var errno syscall.Errno
	if err := sc.Control(func(f uintptr) {
		fd, _, errno = syscall.Syscall(syscall.SYS_FCNTL, f, syscall.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if errno != 0 {
		return nil, fmt.Errorf("share the held lock %s: %w", path, errno)
	}
	return os.NewFile(fd, path), nil
}
