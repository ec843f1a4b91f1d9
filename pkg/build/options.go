package build

import (
	"io"
	"os"
	"strings"
)

// Option configures Build and BuildAll.
type Option func(*options)

type options struct {
	address  string
	daemon   Daemon
	dialer   Dialer
	tls      TLS
	progress io.Writer
	mode     string
	creds    Credentials
	vcs      VCS
	env      map[string]string
}

func newOptions(opts []Option) options {
	o := options{progress: io.Discard, mode: "plain", vcs: Git{}, env: environ()}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithAddress sets the buildkitd address (unix://, tcp://,
// docker-container://, kube-pod://). Without it (and without WithDaemon)
// DefaultAddress is used.
func WithAddress(addr string) Option { return func(o *options) { o.address = addr } }

// WithDaemon asks d for the address when WithAddress gives none, e.g. a
// buildkitd that idopipe starts and manages itself (pkg/buildkitd).
func WithDaemon(d Daemon) Option { return func(o *options) { o.daemon = d } }

// WithDialer makes every connection with d: a daemon that has no address
// of its own (one reached through a cluster's API server). It overrides
// WithAddress and WithDaemon.
func WithDialer(d Dialer) Option { return func(o *options) { o.dialer = d } }

// WithTLS sets the client certificates and CA for a tcp:// daemon (mTLS).
func WithTLS(t TLS) Option { return func(o *options) { o.tls = t } }

// WithProgress shows BuildKit's progress display on w in mode ("auto",
// "tty", "plain", "rawjson", "quiet"); auto is tty on a terminal, else plain.
func WithProgress(w io.Writer, mode string) Option {
	return func(o *options) { o.progress, o.mode = w, mode }
}

// WithCredentials gives buildkitd registry credentials (registry cache,
// private base images); the docker config is asked for other hosts.
func WithCredentials(c Credentials) Option { return func(o *options) { o.creds = c } }

// WithVCS sets how a local context's commit is found (default Git); nil
// turns it off.
func WithVCS(v VCS) Option { return func(o *options) { o.vcs = v } }

// WithEnv is the environment --secret id=…,env=VAR reads VAR from
// (default the process's).
func WithEnv(env map[string]string) Option { return func(o *options) { o.env = env } }

// environ is the process's environment as a map.
func environ() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}
