package kube

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// conn is an exec stream as a net.Conn: writes go to the remote
// process's stdin, reads come from its stdout. When the stream ends (the
// Pod died, its node went away, the API server closed it) both pipes are
// closed with the reason, so a reader or writer blocked on them returns at
// once instead of hanging (buildx#556).
type conn struct {
	pod, ns string

	stdinR  *io.PipeReader
	stdinW  *io.PipeWriter
	stdoutR *io.PipeReader
	stdoutW *io.PipeWriter
	stderr  tail

	up     chan struct{} // closed when the executor first reads stdin: the stream is open
	upOnce sync.Once
	done   chan struct{} // closed when the stream ended
	err    error         // why, set before done is closed
	raw    error         // the executor's own error, for classifying it
	cancel context.CancelFunc
	close  sync.Once
}

func newConn(pod, ns string) *conn {
	c := &conn{pod: pod, ns: ns, up: make(chan struct{}), done: make(chan struct{}), cancel: func() {}}
	c.stdinR, c.stdinW = io.Pipe()
	c.stdoutR, c.stdoutW = io.Pipe()
	return c
}

// execStdin is what the executor copies to the remote stdin: its first
// Read tells that the stream is established.
func (c *conn) execStdin() io.Reader { return readerFunc(c.readStdin) }

func (c *conn) readStdin(p []byte) (int, error) {
	c.upOnce.Do(func() { close(c.up) })
	return c.stdinR.Read(p)
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// ended records why the stream ended and closes both pipes with it.
func (c *conn) ended(err error) {
	why := fmt.Errorf("the exec stream into builder Pod %s/%s ended", c.ns, c.pod)
	if err != nil {
		why = fmt.Errorf("%w: %s", why, oneLine(err.Error()))
	} else {
		why = fmt.Errorf("%w (%w)", why, errStreamEnded)
	}
	if s := c.stderr.String(); s != "" {
		why = fmt.Errorf("%w; buildctl said: %s", why, s)
	}
	c.err, c.raw = why, err
	close(c.done)
	c.stdoutW.CloseWithError(why)
	c.stdinR.CloseWithError(why)
}

func (c *conn) streamErr() error {
	<-c.done
	return c.err
}

func (c *conn) Read(p []byte) (int, error)  { return c.stdoutR.Read(p) }
func (c *conn) Write(p []byte) (int, error) { return c.stdinW.Write(p) }

// Close ends the remote process's stdin (buildctl dial-stdio exits on
// EOF), stops reading, and ends the stream if it does not end by itself
// within a second.
func (c *conn) Close() error {
	c.close.Do(func() {
		_ = c.stdinW.Close()
		_ = c.stdoutR.Close()
		go func() {
			select {
			case <-c.done:
			case <-time.After(time.Second):
			}
			c.cancel()
		}()
	})
	return nil
}

func (c *conn) LocalAddr() net.Addr              { return addr("idopipe") }
func (c *conn) RemoteAddr() net.Addr             { return addr(c.ns + "/" + c.pod) }
func (c *conn) SetDeadline(time.Time) error      { return nil }
func (c *conn) SetReadDeadline(time.Time) error  { return nil }
func (c *conn) SetWriteDeadline(time.Time) error { return nil }

type addr string

func (a addr) Network() string { return "kube-exec" }
func (a addr) String() string  { return string(a) }

// tail keeps the last line of what the remote process wrote to stderr.
type tail struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if t.buf.Len() > 4096 {
		b := t.buf.Bytes()[t.buf.Len()-2048:]
		t.buf = *bytes.NewBuffer(append([]byte(nil), b...))
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(t.buf.String()), "\n")
	return oneLine(lines[len(lines)-1])
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
