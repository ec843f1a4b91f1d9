package build_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/fail"
)

// unixDialer reaches the stack's buildkitd the way a Dialer with no address
// of its own would, recording the keys it is asked for; after fails, later
// dials fail (the daemon went away).
type unixDialer struct {
	mu    sync.Mutex
	keys  []string
	conns []net.Conn
	fails bool
}

func (d *unixDialer) Dial(ctx context.Context, key string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.keys = append(d.keys, key)
	if d.fails {
		return nil, errors.New("the test's daemon is gone")
	}
	c, err := (&net.Dialer{}).DialContext(ctx, "unix", strings.TrimPrefix(stack.BuildKit.Address, "unix://"))
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *unixDialer) String() string { return "test-dialer://buildkitd" }

// cut closes every connection made so far and fails later dials.
func (d *unixDialer) cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fails = true
	for _, c := range d.conns {
		_ = c.Close()
	}
}

// TestDialer: WithDialer makes the connection (over WithAddress), with the
// build's images and contexts as the key.
func TestDialer(t *testing.T) {
	testenv.NeedStack(t)
	dir := writeFiles(t, map[string]string{"Dockerfile": "FROM busybox\nCOPY Dockerfile /x\n"})
	d := &unixDialer{}
	s := spec(t, dir)
	if _, out := mustBuild(t, s, build.WithAddress("unix:///nonexistent.sock"), build.WithDialer(d)); out == "" {
		t.Fatal("no progress")
	}
	want := s.Name + "\x00" + s.Context + "\x00" + s.Dockerfile
	if len(d.keys) == 0 || d.keys[0] != want {
		t.Fatalf("keys %q, want %q first", d.keys, want)
	}
}

// TestDialerLost: a connection that ends during a build (the daemon's Pod
// died) fails the build at once as a daemon failure (exit 13), in one line.
func TestDialerLost(t *testing.T) {
	testenv.NeedStack(t)
	dir := writeFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN busybox sleep 40 && echo " + t.Name() + "\n"})
	d := &unixDialer{}
	var p progress
	time.AfterFunc(3*time.Second, d.cut)
	start := time.Now()
	_, err := build.Build(context.Background(), spec(t, dir), build.WithProgress(&p.Buffer, "plain"), build.WithDialer(d))
	if err == nil || fail.ClassOf(err) != fail.Daemon || !strings.Contains(err.Error(), "the connection to BuildKit was lost") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("build over a cut connection: %v (class %v)\n%s", err, fail.ClassOf(err), p.String())
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("the build noticed the cut after %s", took)
	}
}
