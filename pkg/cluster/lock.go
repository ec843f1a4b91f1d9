package cluster

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/idopipe/idopipe/pkg/fail"
)

// LockName is the Lease that serialises releases into one namespace.
const LockName = "idopipe-release"

// leaseSeconds is how long a lock outlives a holder that stopped renewing
// it (a killed release): the next release takes it over after that.
const leaseSeconds = 30

// Lock takes the namespace's release Lease for holder, waiting up to wait
// while another live holder has it (telling waiting once). unlock releases
// it; until then a goroutine renews it.
func (c *Client) Lock(ctx context.Context, ns, holder string, wait time.Duration, waiting func(string)) (unlock func(), err error) {
	leases := c.Core.CoordinationV1().Leases(ns)
	deadline := time.Now().Add(wait)
	told := false
	for {
		now := metav1.NewMicroTime(time.Now())
		lease, err := leases.Get(ctx, LockName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			l := &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: LockName, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/managed-by": FieldManager}},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: ptr(int32(leaseSeconds)), AcquireTime: &now, RenewTime: &now},
			}
			if lease, err = leases.Create(ctx, l, metav1.CreateOptions{}); err == nil {
				return c.keep(ctx, ns, lease, holder), nil
			}
			if !apierrors.IsAlreadyExists(err) {
				return nil, c.explain(ctx, err, "create Lease "+ns+"/"+LockName)
			}
		case err != nil:
			return nil, c.explain(ctx, err, "read Lease "+ns+"/"+LockName)
		case free(lease, holder):
			lease.Spec.HolderIdentity, lease.Spec.AcquireTime, lease.Spec.RenewTime = &holder, &now, &now
			lease.Spec.LeaseDurationSeconds = ptr(int32(leaseSeconds))
			if lease, err = leases.Update(ctx, lease, metav1.UpdateOptions{}); err == nil {
				return c.keep(ctx, ns, lease, holder), nil
			}
			if !apierrors.IsConflict(err) {
				return nil, c.explain(ctx, err, "take Lease "+ns+"/"+LockName)
			}
		default:
			who := *lease.Spec.HolderIdentity
			if time.Now().After(deadline) {
				return nil, fail.New(fail.Cluster, "wait for it to finish, or raise --lock-timeout",
					"another release into namespace %s holds the lock: %s (since %s)", ns, who, lease.Spec.AcquireTime.Format(time.RFC3339))
			}
			if !told && waiting != nil {
				waiting(fmt.Sprintf("waiting for the release lock of namespace %s, held by %s", ns, who))
				told = true
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// free tells whether the lease may be taken: nobody holds it, we do, or
// its holder stopped renewing it.
func free(l *coordinationv1.Lease, holder string) bool {
	s := l.Spec
	if s.HolderIdentity == nil || *s.HolderIdentity == "" || *s.HolderIdentity == holder {
		return true
	}
	if s.RenewTime == nil || s.LeaseDurationSeconds == nil {
		return true
	}
	return time.Since(s.RenewTime.Time) > time.Duration(*s.LeaseDurationSeconds)*time.Second
}

// keep renews the lease until unlock, which then releases it.
func (c *Client) keep(ctx context.Context, ns string, lease *coordinationv1.Lease, holder string) func() {
	leases := c.Core.CoordinationV1().Leases(ns)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(leaseSeconds * time.Second / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				now := metav1.NewMicroTime(time.Now())
				lease.Spec.RenewTime = &now
				if l, err := leases.Update(context.WithoutCancel(ctx), lease, metav1.UpdateOptions{}); err == nil {
					lease = l
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		// Release: clear the holder (deleting could race a waiter's take-over).
		cur, err := leases.Get(context.WithoutCancel(ctx), LockName, metav1.GetOptions{})
		if err == nil && cur.Spec.HolderIdentity != nil && *cur.Spec.HolderIdentity == holder {
			empty := ""
			cur.Spec.HolderIdentity = &empty
			_, _ = leases.Update(context.WithoutCancel(ctx), cur, metav1.UpdateOptions{})
		}
	}
}

func ptr[T any](v T) *T { return &v }
