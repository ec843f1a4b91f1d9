package cluster

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/idopipe/idopipe/pkg/fail"
)

// PodState is one Pod's readiness and, when not Ready, why.
type PodState struct {
	Name    string   `json:"name"`
	Ready   bool     `json:"ready"`
	Phase   string   `json:"phase"`
	Reasons []string `json:"reasons,omitempty"` // container waiting/terminated reasons, scheduling conditions
	Events  []string `json:"events,omitempty"`  // the Pod's recent events, newest last
	Causes  []Cause  `json:"causes,omitempty"`  // classified reasons
	Logs    []string `json:"logs,omitempty"`    // last log lines of a crashing container

	pod *corev1.Pod
}

// Diagnosis is one line a person can act on.
func (p PodState) String() string {
	if p.Ready {
		return fmt.Sprintf("Pod %s Ready", p.Name)
	}
	s := fmt.Sprintf("Pod %s %s", p.Name, p.Phase)
	if len(p.Reasons) > 0 {
		s += ": " + strings.Join(p.Reasons, "; ")
	}
	return s
}

// WaitOptions tune Wait.
type WaitOptions struct {
	Timeout  time.Duration
	Interval time.Duration           // poll interval; 0 means 500ms
	OnChange func(states []PodState) // called when readiness changes
}

// Wait polls until every named Pod in ns is Ready. At the deadline it
// returns the state of every Pod, with reasons and events for the unready
// ones, and a NotReady error naming them.
func (c *Client) Wait(ctx context.Context, ns string, pods []string, o WaitOptions) ([]PodState, error) {
	if o.Interval == 0 {
		o.Interval = time.Second
	}
	// Poll fast at first (Pods on a warm node are Ready within a second of
	// the apply), then back off to o.Interval.
	interval := 50 * time.Millisecond
	deadline := time.Now().Add(o.Timeout)
	lastReady := -1
	for {
		states, err := c.podStates(ctx, ns, pods)
		if err != nil {
			return nil, err
		}
		ready := 0
		for _, s := range states {
			if s.Ready {
				ready++
			}
		}
		if ready != lastReady && o.OnChange != nil {
			o.OnChange(states)
		}
		lastReady = ready
		if ready == len(pods) {
			return states, nil
		}
		if err := c.classify(ctx, ns, states); err != nil {
			return states, err
		}
		for _, s := range states {
			for _, cause := range s.Causes {
				if cause.Fatal {
					return states, fail.New(fail.NotReady, cause.Fix, "Pod %s/%s: %s: %s", ns, s.Name, cause.Kind, cause.What)
				}
			}
		}
		if time.Now().After(deadline) {
			return c.diagnose(ctx, ns, states, o.Timeout)
		}
		select {
		case <-ctx.Done():
			return states, ctx.Err()
		case <-time.After(interval):
		}
		interval = min(interval*2, o.Interval)
	}
}

func (c *Client) podStates(ctx context.Context, ns string, names []string) ([]PodState, error) {
	list, err := c.Core.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, c.explain(ctx, err, "list Pods in "+ns)
	}
	byName := map[string]*corev1.Pod{}
	for i := range list.Items {
		byName[list.Items[i].Name] = &list.Items[i]
	}
	out := make([]PodState, 0, len(names))
	for _, n := range names {
		p, ok := byName[n]
		if !ok {
			out = append(out, PodState{Name: n, Phase: "Missing", Reasons: []string{"the Pod does not exist"}})
			continue
		}
		out = append(out, stateOf(p))
	}
	return out, nil
}

// classify fills in the causes (and, for crash loops, log lines) of the
// unready Pods, reading their events.
func (c *Client) classify(ctx context.Context, ns string, states []PodState) error {
	for i := range states {
		s := &states[i]
		s.Causes = nil
		if s.Ready || s.pod == nil {
			continue
		}
		var events []string
		for _, cond := range s.pod.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
				s.Causes = append(s.Causes, classifyUnschedulable(cond))
			}
		}
		for _, cs := range s.pod.Status.ContainerStatuses {
			w := cs.State.Waiting
			if w == nil || w.Reason == "" || w.Reason == "ContainerCreating" || w.Reason == "PodInitializing" {
				continue
			}
			if events == nil {
				events = c.eventMessages(ctx, ns, s.Name)
			}
			cause := Classify(w.Reason, w.Message, events)
			if cause.Kind == "crash-loop" {
				s.Logs = c.lastLogLines(ctx, ns, s.Name, cs.Name, 5)
				if len(s.Logs) > 0 {
					cause.What += "; last log lines: " + strings.Join(s.Logs, " | ")
				}
			}
			s.Causes = append(s.Causes, cause)
		}
	}
	return nil
}

func (c *Client) eventMessages(ctx context.Context, ns, pod string) []string {
	evs, err := c.Core.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.SelectorFromSet(fields.Set{"involvedObject.name": pod, "involvedObject.kind": "Pod"}).String(),
	})
	if err != nil {
		return []string{}
	}
	out := make([]string, 0, len(evs.Items))
	for _, e := range evs.Items {
		out = append(out, e.Reason+": "+e.Message)
	}
	return out
}

// lastLogLines reads the previous run's log of a crashing container; a
// cluster without kubelets (or without log access) gives none.
func (c *Client) lastLogLines(ctx context.Context, ns, pod, container string, n int64) []string {
	b, err := c.Core.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Previous: true, TailLines: &n}).DoRaw(ctx)
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

func stateOf(p *corev1.Pod) PodState {
	s := PodState{Name: p.Name, Phase: string(p.Status.Phase), pod: p}
	if p.DeletionTimestamp != nil {
		s.Reasons = append(s.Reasons, "being deleted")
	}
	for _, cond := range p.Status.Conditions {
		switch {
		case cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue:
			s.Ready = p.DeletionTimestamp == nil
		case cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse:
			s.Reasons = append(s.Reasons, fmt.Sprintf("unschedulable (%s): %s", cond.Reason, cond.Message))
		}
	}
	if p.Spec.NodeName == "" && !slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == corev1.PodScheduled }) {
		s.Reasons = append(s.Reasons, "not scheduled yet (is a scheduler running?)")
	}
	for _, cs := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
		switch {
		case cs.State.Waiting != nil:
			r := fmt.Sprintf("container %s waiting: %s", cs.Name, cs.State.Waiting.Reason)
			if m := cs.State.Waiting.Message; m != "" {
				r += " (" + m + ")"
			}
			s.Reasons = append(s.Reasons, r)
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0:
			s.Reasons = append(s.Reasons, fmt.Sprintf("container %s terminated: %s, exit code %d", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode))
		case !cs.Ready && cs.State.Running != nil:
			s.Reasons = append(s.Reasons, fmt.Sprintf("container %s running but not ready (readiness probe)", cs.Name))
		}
	}
	return s
}

// diagnose adds the recent events of every unready Pod and returns the
// NotReady error.
func (c *Client) diagnose(ctx context.Context, ns string, states []PodState, timeout time.Duration) ([]PodState, error) {
	var unready []string
	for i := range states {
		if states[i].Ready {
			continue
		}
		unready = append(unready, states[i].String())
		evs, err := c.Core.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: fields.SelectorFromSet(fields.Set{"involvedObject.name": states[i].Name, "involvedObject.kind": "Pod"}).String(),
		})
		if err != nil && !apierrors.IsNotFound(err) {
			continue // the diagnosis is best effort; the deadline error stands
		}
		if evs == nil {
			continue
		}
		sort.Slice(evs.Items, func(a, b int) bool { return eventTime(evs.Items[a]).Before(eventTime(evs.Items[b])) })
		for _, e := range lastN(evs.Items, 10) {
			states[i].Events = append(states[i].Events, fmt.Sprintf("%s %s: %s", e.Type, e.Reason, strings.TrimSpace(e.Message)))
		}
	}
	return states, fail.New(fail.NotReady, fmt.Sprintf("read the Pod events above, or run kubectl describe pod -n %s", ns),
		"not Ready after %s: %s", timeout, strings.Join(unready, " | "))
}

func eventTime(e corev1.Event) time.Time {
	if !e.LastTimestamp.IsZero() {
		return e.LastTimestamp.Time
	}
	if !e.EventTime.IsZero() {
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

func lastN[T any](s []T, n int) []T {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
