package fail

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

// TestWithCause: the message and the fix are New's, the cause is reachable
// by errors.Is/As and does not show in the message.
func TestWithCause(t *testing.T) {
	cause := &fs.PathError{Op: "open", Path: "/x", Err: fs.ErrNotExist}
	e := WithCause(Registry, cause, "do this", "thing %s broke", "x")
	if got, want := e.Error(), "thing x broke: do this"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := e.Error(), New(Registry, "do this", "thing %s broke", "x").Error(); got != want {
		t.Errorf("WithCause's message %q differs from New's %q", got, want)
	}
	var pe *fs.PathError
	if !errors.Is(e, fs.ErrNotExist) || !errors.As(e, &pe) || pe != cause {
		t.Errorf("the cause is not reachable from %v", e)
	}
	if wrapped := fmt.Errorf("stage: %w", e); ClassOf(wrapped) != Registry || !errors.Is(wrapped, fs.ErrNotExist) {
		t.Errorf("wrapped again: class %s, cause lost", ClassOf(wrapped))
	}
	if n := WithCause(Usage, nil, "", "no cause"); n.Err != nil || n.Error() != "no cause" {
		t.Errorf("nil cause: %#v", n)
	}
}

func TestWrapKeepsCause(t *testing.T) {
	e := Wrap(Cluster, fs.ErrPermission, "fix", "cannot %s", "read")
	if e.Error() != "cannot read: permission denied: fix" || !errors.Is(e, fs.ErrPermission) {
		t.Errorf("Wrap: %q", e)
	}
}

func TestFirstFailure(t *testing.T) {
	real := errors.New("boom")
	cancelled := fmt.Errorf("task: %w", context.Canceled)
	live := context.Background()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		errs []error
		want error
	}{
		{"none", live, nil, nil},
		{"all succeeded", live, []error{nil, nil}, nil},
		{"the failure, not the tasks it cancelled before it", live, []error{cancelled, nil, real, cancelled}, real},
		{"the first of two failures", live, []error{nil, real, errors.New("later")}, real},
		{"a failure wins over an interrupt", done, []error{cancelled, real}, real},
		{"only cancellations, ctx cancelled: ctx's error", done, []error{cancelled, nil}, context.Canceled},
		{"a task cancelled by itself", live, []error{nil, cancelled}, cancelled},
	} {
		if got := FirstFailure(tc.ctx, tc.errs); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{"a": "a", " a b \n": "a b", "a\n  b\r\nc": "a b c"} {
		if got := OneLine(in); got != want {
			t.Errorf("OneLine(%q) = %q, want %q", in, got, want)
		}
	}
}
