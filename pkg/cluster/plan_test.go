package cluster

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

func TestForEach(t *testing.T) {
	t.Run("all run, none fail", func(t *testing.T) {
		var ran atomic.Int64
		if err := forEach(context.Background(), 100, func(context.Context, int) error { ran.Add(1); return nil }); err != nil || ran.Load() != 100 {
			t.Fatalf("ran %d, err %v", ran.Load(), err)
		}
	})
	t.Run("first failure in index order, not in time", func(t *testing.T) {
		late, early := errors.New("object 3"), errors.New("object 5")
		release := make(chan struct{})
		err := forEach(context.Background(), 6, func(ctx context.Context, i int) error {
			switch i {
			case 3:
				<-release // fails after object 5 has failed
				return late
			case 5:
				defer close(release)
				return early
			}
			return nil
		})
		if err != late {
			t.Fatalf("got %v, want %v", err, late)
		}
	})
	t.Run("a failure cancels the running and starts no more", func(t *testing.T) {
		boom := errors.New("boom")
		var started atomic.Int64
		err := forEach(context.Background(), 1000, func(ctx context.Context, i int) error {
			started.Add(1)
			if i == 0 {
				return boom
			}
			<-ctx.Done() // the others wait to be cancelled
			return ctx.Err()
		})
		if err != boom {
			t.Fatalf("got %v, want boom (the cancelled runs do not count)", err)
		}
		if n := started.Load(); n > 2*parallel {
			t.Errorf("%d of 1000 started after the first failure", n)
		}
	})
	t.Run("cancelled by the caller", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := forEach(ctx, 10, func(ctx context.Context, i int) error { return ctx.Err() })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	})
}
