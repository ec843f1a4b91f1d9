package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"github.com/idopipe/idopipe/pkg/fail"
)

// LockName is the Lease that serialises releases into one namespace.
const LockName = "idopipe-release"

// LockTiming is how the release Lease is held: client-go's leader election
// (tools/leaderelection with a resourcelock.LeaseLock) takes it, renews it
// every RetryPeriod and gives up leading when a renewal has not succeeded
// within RenewDeadline, before another release may take the Lease over
// (LeaseDuration after the last renewal it saw).
type LockTiming struct {
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// DefaultLockTiming is client-go's own for controllers.
var DefaultLockTiming = LockTiming{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}

// Lock takes the namespace's release Lease for holder, waiting up to wait
// while another live holder has it (telling waiting once). unlock releases
// it; until then it is renewed. A release that loses the Lease (a renewal
// not done within the renew deadline, as when the API server is away for
// longer, or another holder found) is stopped before its next request to
// the API server: every request of this client then fails with a
// fail.LockLost error naming who holds the lock now.
func (c *Client) Lock(ctx context.Context, ns, holder string, wait time.Duration, waiting func(string)) (unlock func(), err error) {
	t := c.LockTiming
	if t == (LockTiming{}) {
		t = DefaultLockTiming
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: LockName, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/managed-by": FieldManager}},
		Client:     c.leaseClient().CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: holder},
		Labels:     map[string]string{"app.kubernetes.io/managed-by": FieldManager},
	}
	started := make(chan struct{})
	stopped := make(chan struct{})
	var mu sync.Mutex
	var leading, releasing, told bool
	var elector *leaderelection.LeaderElector
	lost := func(why string) {
		mu.Lock()
		defer mu.Unlock()
		if !leading || releasing {
			return
		}
		leading = false
		c.guard().set(fail.New(fail.LockLost, "rerun; it converges (the other release's changes stay, the rerun applies this one's on top)",
			"lost the release lock of namespace %s %s", ns, why))
	}
	elector, err = leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   t.LeaseDuration,
		RenewDeadline:   t.RenewDeadline,
		RetryPeriod:     t.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            ns + "/" + LockName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) {
				mu.Lock()
				leading = true
				mu.Unlock()
				close(started)
			},
			OnStoppedLeading: func() {
				if who := elector.GetLeader(); who != "" && who != holder {
					lost("to " + who)
					return
				}
				lost(fmt.Sprintf("(not renewed within %s: the API server at %s did not answer)", t.RenewDeadline, c.Host))
			},
			OnNewLeader: func(who string) {
				if who == holder {
					return
				}
				mu.Lock()
				isLeading, tell := leading, !told && waiting != nil && who != ""
				if tell {
					told = true
				}
				mu.Unlock()
				if isLeading {
					lost("to " + who)
					return
				}
				if tell {
					waiting(fmt.Sprintf("waiting for the release lock of namespace %s, held by %s", ns, who))
				}
			},
		},
	})
	if err != nil {
		return nil, fail.Wrap(fail.Internal, err, "", "cannot set up the release lock")
	}
	// The elector logs through klog; its words are not a CLI's.
	rctx, cancel := context.WithCancel(klog.NewContext(context.WithoutCancel(ctx), logr.Discard()))
	go func() {
		defer close(stopped)
		elector.Run(rctx)
	}()
	// However short the wait, the API server gets a moment to answer.
	timer := time.NewTimer(max(wait, 3*time.Second))
	defer timer.Stop()
	select {
	case <-started:
	case <-stopped:
		cancel()
		return nil, fail.New(fail.Internal, "", "the release lock of namespace %s could not be taken", ns)
	case <-timer.C:
		cancel()
		<-stopped
		who := elector.GetLeader()
		if who == "" {
			return nil, fail.New(fail.Cluster, "check that the API server at "+c.Host+" is up",
				"could not take the release lock of namespace %s within %s", ns, wait)
		}
		return nil, fail.New(fail.Cluster, "wait for it to finish, or raise --lock-timeout",
			"another release into namespace %s holds the lock: %s", ns, who)
	case <-ctx.Done():
		cancel()
		<-stopped
		return nil, ctx.Err()
	}
	return func() {
		mu.Lock()
		releasing = true
		mu.Unlock()
		cancel() // ReleaseOnCancel: the elector clears the holder
		<-stopped
	}, nil
}

// guard stops a client's requests once the release lock is lost.
type guard struct {
	mu  sync.Mutex
	err error
}

func (g *guard) set(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err == nil {
		g.err = err
	}
}

func (g *guard) get() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// LockLost is the error of a lost release lock, nil while it holds (or
// none was taken).
func (c *Client) LockLost() error { return c.guard().get() }

func (c *Client) guard() *guard {
	c.guardOnce.Do(func() {
		if c.lockGuard == nil {
			c.lockGuard = &guard{}
		}
	})
	return c.lockGuard
}

// guarded is a transport that refuses every request once g is set: a
// release that lost its lock writes nothing more.
type guarded struct {
	next http.RoundTripper
	g    *guard
}

func (t guarded) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.g.get(); err != nil {
		return nil, err
	}
	return t.next.RoundTrip(req)
}

// lockLost finds a lost lock's error in err's chain.
func lockLost(err error) (*fail.Error, bool) {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if fe, ok := e.(*fail.Error); ok && fe.Class == fail.LockLost {
			return fe, true
		}
	}
	return nil, false
}

func ptr[T any](v T) *T { return &v }
