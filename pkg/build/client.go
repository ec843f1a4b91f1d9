package build

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	bkclient "github.com/moby/buildkit/client"
	_ "github.com/moby/buildkit/client/connhelper/dockercontainer" // docker-container:// addresses
	_ "github.com/moby/buildkit/client/connhelper/kubepod"         // kube-pod:// addresses
	_ "github.com/moby/buildkit/client/connhelper/podmancontainer" // podman-container:// addresses
	_ "github.com/moby/buildkit/client/connhelper/ssh"             // ssh:// addresses
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/idopipe/idopipe/pkg/fail"
)

// DefaultAddress is buildkitd's own default socket.
const DefaultAddress = "unix:///run/buildkit/buildkitd.sock"

// Daemon finds (and if need be starts) a buildkitd and returns its address.
type Daemon interface {
	Address(ctx context.Context) (string, error)
}

// Dialer connects to a daemon that has no address of its own, such as a
// BuildKit in a Kubernetes cluster reached through its API server. key
// names the build (its images and contexts): a Dialer with several daemons
// sends the same key to the same one, where its cache is.
type Dialer interface {
	Dial(ctx context.Context, key string) (net.Conn, error)
	String() string // the daemon's address, for messages
}

// keepalive pings a dialed daemon's connection after keepaliveTime without
// traffic and drops it when the ping is not answered: a stream whose far
// end went away without closing (a suspended node) fails the build instead
// of hanging it. buildkitd keeps gRPC's server default of refusing pings
// more often than every 5 minutes (too_many_pings), hence not less.
const (
	keepaliveTime    = 5 * time.Minute
	keepaliveTimeout = 30 * time.Second
)

// TLS is the client side of a tcp:// daemon's mTLS: the CA that signed the
// daemon's certificate, and the client's certificate and key.
type TLS struct {
	CACert, Cert, Key string // PEM files
	ServerName        string // default: the address's host
}

func (t TLS) clientOpts() ([]bkclient.ClientOpt, error) {
	var opts []bkclient.ClientOpt
	for _, f := range []string{t.CACert, t.Cert, t.Key} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return nil, fail.New(fail.Usage, "pass the PEM files of the daemon's mTLS certificates", "BuildKit TLS file %s does not exist", f)
		}
	}
	if (t.Cert == "") != (t.Key == "") {
		return nil, fail.New(fail.Usage, "pass both --buildkit-tls-cert and --buildkit-tls-key", "a client certificate needs its key")
	}
	if t.CACert != "" {
		opts = append(opts, bkclient.WithServerConfig(t.ServerName, t.CACert))
	} else if t.ServerName != "" {
		opts = append(opts, bkclient.WithServerConfigSystem(t.ServerName))
	}
	if t.Cert != "" {
		opts = append(opts, bkclient.WithCredentials(t.Cert, t.Key))
	}
	return opts, nil
}

// resolveAddress picks the daemon: the explicit address, else the managed
// daemon, else DefaultAddress.
func (o options) resolveAddress(ctx context.Context) (string, error) {
	if o.address != "" {
		return o.address, nil
	}
	if o.daemon != nil {
		return o.daemon.Address(ctx)
	}
	return DefaultAddress, nil
}

// Connect opens a client to addr and checks that a daemon answers. Of opts
// only WithTLS and WithDialer (which replaces addr) matter.
func Connect(ctx context.Context, addr string, opts ...Option) (*bkclient.Client, error) {
	o := newOptions(opts)
	if o.dialer != nil {
		c, _, err := dial(ctx, o.dialer, "")
		return c, err
	}
	return connect(ctx, addr, o.tls)
}

func (o options) connect(ctx context.Context, key string) (*bkclient.Client, error) {
	if o.dialer != nil {
		c, _, err := dial(ctx, o.dialer, key)
		return c, err
	}
	addr, err := o.resolveAddress(ctx)
	if err != nil {
		return nil, err
	}
	return connect(ctx, addr, o.tls)
}

func connect(ctx context.Context, addr string, t TLS) (*bkclient.Client, error) {
	unreachable := func(err error) error {
		return fail.Wrap(fail.Daemon, unwrapGRPC(err),
			"start buildkitd, or point --buildkit-host / $BUILDKIT_HOST at a running one",
			"cannot reach BuildKit at %s", addr)
	}
	scheme, _, ok := strings.Cut(addr, "://")
	if !ok {
		return nil, fail.New(fail.Usage, "use unix:///PATH, tcp://HOST:PORT, docker-container://NAME or kube-pod://POD", "BuildKit address %q has no scheme", addr)
	}
	copts, err := t.clientOpts()
	if err != nil {
		return nil, err
	}
	c, err := bkclient.New(ctx, addr, copts...)
	if err != nil {
		if strings.Contains(err.Error(), "unsupported protocol") || strings.Contains(err.Error(), "unknown scheme") {
			return nil, fail.Wrap(fail.Usage, err, "use unix://, tcp://, docker-container:// or kube-pod://", "BuildKit address scheme %q is not supported", scheme)
		}
		return nil, unreachable(err)
	}
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Info(ictx); err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, unreachable(err)
	}
	return c, nil
}

// dial opens a client whose connections d makes. The first is made here,
// so that its failure (no Ready daemon, no permission) is returned as d
// said it; gRPC makes later ones (after a lost connection) through d too.
// replica is the first connection's remote address (which of d's daemons).
func dial(ctx context.Context, d Dialer, key string) (_ *bkclient.Client, replica string, _ error) {
	first, err := d.Dial(ctx, key)
	if err != nil {
		return nil, "", err
	}
	if a := first.RemoteAddr(); a != nil {
		replica = a.String()
	}
	var once sync.Once
	dialer := func(ctx context.Context, _ string) (net.Conn, error) {
		var c net.Conn
		once.Do(func() { c, first = first, nil })
		if c != nil {
			return c, nil
		}
		return d.Dial(ctx, key)
	}
	c, err := bkclient.New(ctx, "", bkclient.WithContextDialer(dialer),
		bkclient.WithGRPCDialOption(grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout})))
	if err != nil {
		return nil, "", fail.Wrap(fail.Daemon, unwrapGRPC(err), "", "cannot reach BuildKit at %s", d)
	}
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := c.Info(ictx); err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		return nil, "", fail.Wrap(fail.Daemon, unwrapGRPC(err), "check the builder's Pods and their logs", "cannot reach BuildKit at %s", d)
	}
	return c, replica, nil
}

// lostConnection tells whether a solve failed because the connection to
// the daemon was lost (the daemon died, a dialed stream ended).
func lostConnection(err error) bool {
	if s, ok := status.FromError(err); ok && s.Code() == codes.Unavailable {
		return true
	}
	var se interface{ GRPCStatus() *status.Status }
	return errors.As(err, &se) && se.GRPCStatus().Code() == codes.Unavailable
}

// unwrapGRPC strips gRPC's "rpc error: code = … desc =" wrapping.
func unwrapGRPC(err error) error {
	if s, ok := status.FromError(err); ok && s.Code() != codes.OK {
		return errors.New(s.Message())
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return fmt.Errorf("%s", se.GRPCStatus().Message())
	}
	return err
}
