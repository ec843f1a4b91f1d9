package cluster

import (
	"context"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestPodEventsOldestFirst: events come back in time order, whichever
// timestamp the event carries, and as "Reason: message".
func TestPodEventsOldestFirst(t *testing.T) {
	now := time.Now()
	ev := func(name, reason string, last, created time.Time) *corev1.Event {
		return &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", CreationTimestamp: metav1.NewTime(created)},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "p"}, Reason: reason, Message: "m " + name,
			LastTimestamp: metav1.NewTime(last)}
	}
	c := &Client{Core: fake.NewClientset(
		ev("a", "Pulling", now.Add(2*time.Second), now),
		ev("b", "Scheduled", time.Time{}, now.Add(-time.Minute)),
		ev("c", "Failed", now.Add(3*time.Second), now),
	)}
	got := c.PodEvents(context.Background(), "ns", "p")
	want := []string{"Scheduled: m b", "Pulling: m a", "Failed: m c"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := c.PodEvents(context.Background(), "other", "p"); got == nil || len(got) != 0 {
		t.Errorf("no events: %#v, want an empty list", got)
	}
	// client-go's fake answers every log request with "fake logs".
	if got := c.PodLogLines(context.Background(), "ns", "p", "", true, 5); !reflect.DeepEqual(got, []string{"fake logs"}) {
		t.Errorf("log lines %q", got)
	}
}
