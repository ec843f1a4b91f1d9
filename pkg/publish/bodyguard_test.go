package publish

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// lateReader is a transport that answers at once and reads the request's
// body afterwards (once after is closed: when the caller's RoundTrip has
// returned), as net/http's HTTP/2 transport may when the context is
// cancelled or the server answers early.
type lateReader struct {
	after chan struct{}
	read  chan error
}

func (l lateReader) RoundTrip(req *http.Request) (*http.Response, error) {
	go func() {
		<-l.after
		_, err := io.ReadAll(req.Body)
		l.read <- err
	}()
	return &http.Response{StatusCode: http.StatusAccepted, Body: http.NoBody, Request: req}, nil
}

// countingBody counts the reads that reach it: go-containerregistry's
// progress reader sends an update on each.
type countingBody struct {
	io.Reader
	reads atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) { c.reads.Add(1); return c.Reader.Read(p) }
func (c *countingBody) Close() error               { return nil }

// TestBodyGuardStopsLateReads: a body read after its round trip returned
// gets an error and never reaches the wrapped body (whose reads would send
// on a closed progress channel); without the guard, the same late read
// reaches it.
func TestBodyGuardStopsLateReads(t *testing.T) {
	for _, guarded := range []bool{true, false} {
		late := lateReader{after: make(chan struct{}), read: make(chan error, 1)}
		var rt http.RoundTripper = late
		if guarded {
			rt = bodyGuard{late}
		}
		body := &countingBody{Reader: strings.NewReader("layer bytes")}
		req, err := http.NewRequest(http.MethodPatch, "https://registry.example/v2/o/p/blobs/uploads/x", body)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rt.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		close(late.after)
		err = <-late.read
		switch {
		case guarded && (!errors.Is(err, errRoundTripOver) || body.reads.Load() != 0):
			t.Errorf("guarded: late read gave %v and reached the body %d times, want %v and 0", err, body.reads.Load(), errRoundTripOver)
		case !guarded && body.reads.Load() == 0:
			t.Errorf("unguarded: the late read never reached the body, so this test shows nothing")
		}
	}
}

// TestBodyGuardPassesBodies: a body read during the round trip is the
// request's, whole, and a request without a body goes through unchanged.
func TestBodyGuardPassesBodies(t *testing.T) {
	var got string
	rt := bodyGuard{roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if req.Body != nil {
			b, err := io.ReadAll(req.Body)
			if err != nil {
				return nil, err
			}
			got = string(b)
		}
		return &http.Response{StatusCode: http.StatusCreated, Body: http.NoBody, Request: req}, nil
	})}
	req, _ := http.NewRequest(http.MethodPut, "https://registry.example/v2/o/p/blobs/uploads/x", strings.NewReader("layer bytes"))
	if _, err := rt.RoundTrip(req); err != nil || got != "layer bytes" {
		t.Errorf("body %q, err %v", got, err)
	}
	head, _ := http.NewRequest(http.MethodHead, "https://registry.example/v2/o/p/blobs/sha256:x", nil)
	if resp, err := rt.RoundTrip(head); err != nil || resp.StatusCode != http.StatusCreated {
		t.Errorf("HEAD: %v %v", resp, err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
