package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// Inject decides, per request, whether the proxy answers itself: it returns
// the status and body to send, or ok=false to forward the request. The
// status Reset drops the connection after reading half the request body
// (a connection reset mid-upload).
type Inject func(r *http.Request) (status int, body string, ok bool)

// Reset, as an Inject status, drops the connection mid-request.
const Reset = -1

// Proxy is a TLS reverse proxy on loopback in front of the registry. It
// forwards everything to the real registry unless its Inject answers, and
// counts requests by method and path. Tests use it where only a response
// GHCR sends (not this registry) shows a case.
type Proxy struct {
	Host   string // 127.0.0.1:PORT
	CAFile string
	srv    *http.Server
	mu     sync.Mutex
	inject Inject
	count  atomic.Int64
	byPath map[string]int
}

// StartProxy starts a proxy in front of r.
func (r *Registry) StartProxy(dir string, inject Inject) (*Proxy, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := &Proxy{CAFile: filepath.Join(dir, "proxy-cert.pem"), inject: inject, byPath: map[string]int{}}
	keyFile := filepath.Join(dir, "proxy-key.pem")
	if err := selfSigned(p.CAFile, keyFile); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(p.CAFile, keyFile)
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(r.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	target := &url.URL{Scheme: "https", Host: r.Host}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = log.New(io.Discard, "", 0) // a client that gives up mid-request is part of the tests
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.Host = l.Addr().String()
	p.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			p.count.Add(1)
			p.mu.Lock()
			p.byPath[req.Method+" "+req.URL.Path]++
			inject := p.inject
			p.mu.Unlock()
			if inject != nil {
				if status, body, ok := inject(req); ok {
					if status == Reset {
						resetMidBody(w, req)
						return
					}
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(status)
					_, _ = w.Write([]byte(body))
					return
				}
			}
			// req.Host stays the proxy's: the registry builds upload
			// Location URLs from it, and they must lead back here.
			rp.ServeHTTP(w, req)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}
	go func() { _ = p.srv.ServeTLS(l, "", "") }()
	return p, nil
}

// Requests is the number of requests seen so far.
func (p *Proxy) Requests() int64 { return p.count.Load() }

// Count is how many requests had this method and path prefix.
func (p *Proxy) Count(method, pathPrefix string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for k, v := range p.byPath {
		if len(k) >= len(method)+1+len(pathPrefix) && k[:len(method)+1+len(pathPrefix)] == method+" "+pathPrefix {
			n += v
		}
	}
	return n
}

// Close stops the proxy.
func (p *Proxy) Close() error { return p.srv.Close() }

// resetMidBody reads about half of the request body, then closes the
// connection without answering.
func resetMidBody(w http.ResponseWriter, req *http.Request) {
	if req.ContentLength > 1 {
		_, _ = io.CopyN(io.Discard, req.Body, req.ContentLength/2)
	} else {
		_, _ = io.CopyN(io.Discard, req.Body, 1<<16)
	}
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			if tc, ok := conn.(*tls.Conn); ok {
				if tcp, ok := tc.NetConn().(*net.TCPConn); ok {
					_ = tcp.SetLinger(0) // RST, not FIN
				}
			}
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}
