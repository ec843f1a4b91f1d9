package publish

import (
	"errors"
	"io"
	"net/http"
	"sync"
)

// errRoundTripOver is what a request body read after its round trip
// returns.
var errRoundTripOver = errors.New("publish: the request's round trip is over")

// bodyGuard is a transport that lets a request's body be read only until
// its round trip returns. net/http's HTTP/2 transport may go on reading a
// body after RoundTrip has returned (the context was cancelled, or the
// registry answered before the whole body was sent); go-containerregistry
// wraps each upload's body in a reader that sends a progress update on
// every read, and closes the progress channel when the push returns, so
// such a late read panicked with "send on closed channel" when a push was
// interrupted (measured: TestInterruptEachStage/push, once in a full
// run). A late read now gets an error instead, which ends the stream.
type bodyGuard struct{ next http.RoundTripper }

func (g bodyGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return g.next.RoundTrip(req)
	}
	b := &guardedBody{rc: req.Body}
	r := req.Clone(req.Context())
	r.Body = b
	resp, err := g.next.RoundTrip(r)
	b.end()
	return resp, err
}

// guardedBody is a request body that refuses reads once end was called;
// a read in progress finishes first.
type guardedBody struct {
	mu    sync.Mutex
	ended bool
	rc    io.ReadCloser
}

func (b *guardedBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		return 0, errRoundTripOver
	}
	return b.rc.Read(p)
}

func (b *guardedBody) Close() error { return b.rc.Close() }

func (b *guardedBody) end() {
	b.mu.Lock()
	b.ended = true
	b.mu.Unlock()
}
