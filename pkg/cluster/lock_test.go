package cluster

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/idopipe/idopipe/pkg/fail"
)

// leaseServer is a fake clientset whose Leases keep resourceVersions as
// an API server does: an Update with a stale one is a Conflict.
func leaseServer() *fake.Clientset {
	core, _ := leaseServerDropping()
	return core
}

// leaseServerDropping is leaseServer whose drop(), once called, makes the
// next Lease update go through while its reply is lost (an error instead).
func leaseServerDropping() (*fake.Clientset, func()) {
	core := fake.NewClientset()
	rv := 0
	var mu sync.Mutex
	dropNext := false
	core.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		rv++
		a.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease).ResourceVersion = strconv.Itoa(rv)
		return false, nil, nil
	})
	core.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		l := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease)
		cur, err := core.Tracker().Get(coordinationv1.SchemeGroupVersion.WithResource("leases"), l.Namespace, l.Name)
		if err != nil {
			return true, nil, err
		}
		if cur.(*coordinationv1.Lease).ResourceVersion != l.ResourceVersion {
			return true, nil, apierrors.NewConflict(coordinationv1.Resource("leases"), l.Name, nil)
		}
		rv++
		l.ResourceVersion = strconv.Itoa(rv)
		mu.Lock()
		drop := dropNext
		dropNext = false
		mu.Unlock()
		if drop {
			if err := core.Tracker().Update(coordinationv1.SchemeGroupVersion.WithResource("leases"), l, l.Namespace); err != nil {
				return true, nil, err
			}
			return true, nil, apierrors.NewTimeoutError("the reply was lost", 1)
		}
		return false, nil, nil
	})
	return core, func() {
		mu.Lock()
		dropNext = true
		mu.Unlock()
	}
}

var fastLock = LockTiming{LeaseDuration: 1500 * time.Millisecond, RenewDeadline: time.Second, RetryPeriod: 200 * time.Millisecond}

// heldLock renews as often as fastLock, but its Lease outlives a stall of
// the holder's renewals and its holder gives up only after 3 s without
// one: a second holder's wait (3 s at least) must end in a refusal even
// when the machine is too busy to renew every 1.5 s (a whole make test's
// load once let the second take fastLock's Lease over).
var heldLock = LockTiming{LeaseDuration: 10 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 200 * time.Millisecond}

// TestLockHeldAndLost: a second holder waits and is refused naming the
// first; a holder whose Lease another takes over loses the lock, and its
// client refuses every request after that.
func TestLockHeldAndLost(t *testing.T) {
	ctx := context.Background()
	core := leaseServer()
	a := &Client{Core: core, LockTiming: heldLock}
	unlock, err := a.Lock(ctx, "ido", "release-a", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &Client{Core: core, LockTiming: heldLock}
	var said string
	_, err = b.Lock(ctx, "ido", "release-b", 0, func(s string) { said = s })
	if fail.ClassOf(err) != fail.Cluster || !strings.Contains(err.Error(), "release-a") || !strings.Contains(said, "held by release-a") {
		t.Fatalf("second lock: %v (said %q), want refused naming release-a", err, said)
	}
	if a.LockLost() != nil {
		t.Fatalf("lost too early: %v", a.LockLost())
	}
	// Another release takes the Lease over (as after a lapse) and keeps
	// renewing it.
	stop := make(chan struct{})
	defer close(stop)
	other := "release-c"
	took := make(chan struct{})
	go func() {
		taken := false
		for {
			lease, err := core.CoordinationV1().Leases("ido").Get(ctx, LockName, metav1.GetOptions{})
			if err == nil {
				now := metav1.NewMicroTime(time.Now())
				lease.Spec.HolderIdentity, lease.Spec.RenewTime = &other, &now
				if _, err := core.CoordinationV1().Leases("ido").Update(ctx, lease, metav1.UpdateOptions{}); err == nil && !taken {
					taken = true
					close(took)
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	<-took
	// Lost once a renewal has failed for heldLock's RenewDeadline.
	deadline := time.Now().Add(10 * time.Second)
	for a.LockLost() == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	lost := a.LockLost()
	if fail.ClassOf(lost) != fail.LockLost || !strings.Contains(lost.Error(), "lost the release lock of namespace ido") {
		t.Fatalf("LockLost() = %v", lost)
	}
	unlock()
	// The guard refuses requests once the lock is lost.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	_, err = (&http.Client{Transport: guarded{next: http.DefaultTransport, g: a.guard()}}).Get(srv.URL)
	if _, ok := lockLost(err); !ok {
		t.Errorf("request after the loss: %v, want the lost lock's error", err)
	}
}

// TestUnlockReleases: unlock clears the holder, so the next release takes
// the lock at once, and an unlocked holder has not lost anything.
func TestUnlockReleases(t *testing.T) {
	ctx := context.Background()
	core := leaseServer()
	a := &Client{Core: core, LockTiming: fastLock}
	unlock, err := a.Lock(ctx, "ido", "release-a", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	b := &Client{Core: core, LockTiming: fastLock}
	start := time.Now()
	unlockB, err := b.Lock(ctx, "ido", "release-b", 0, nil)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	defer unlockB()
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s to take a released lock", d)
	}
	if a.LockLost() != nil {
		t.Errorf("an unlock counts as lost: %v", a.LockLost())
	}
}

// TestLockSurvivesALostReply: a renewal that went through but whose reply
// was lost leaves a stale resourceVersion behind; the next renewals must
// still succeed (client-go's elector reads the Lease again after a failed
// optimistic update), so the lock is not lost and not taken over.
func TestLockSurvivesALostReply(t *testing.T) {
	core, drop := leaseServerDropping()
	a := &Client{Core: core, LockTiming: fastLock}
	unlock, err := a.Lock(context.Background(), "ido", "release-a", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	drop()
	time.Sleep(3 * fastLock.LeaseDuration)
	if err := a.LockLost(); err != nil {
		t.Fatalf("lost after one lost reply: %v", err)
	}
	lease, err := core.CoordinationV1().Leases("ido").Get(context.Background(), LockName, metav1.GetOptions{})
	if err != nil || *lease.Spec.HolderIdentity != "release-a" || time.Since(lease.Spec.RenewTime.Time) > fastLock.RenewDeadline {
		t.Errorf("lease after a lost reply: %+v, %v", lease.Spec, err)
	}
}
