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
	"github.com/idopipe/idopipe/pkg/manifest"
)

// PodState is one Pod's readiness and, when not Ready, why.
type PodState struct {
	Name    string   `json:"name"`
	Ready   bool     `json:"ready"`
	Phase   string   `json:"phase"`
	Node    string   `json:"node,omitempty"`    // where it was scheduled
	Reasons []string `json:"reasons,omitempty"` // container waiting/terminated reasons, scheduling conditions
	Events  []string `json:"events,omitempty"`  // the Pod's recent events, newest last
	Causes  []Cause  `json:"causes,omitempty"`  // classified reasons
	Logs    []string `json:"logs,omitempty"`    // last log lines of a crashing container

	pod *corev1.Pod
}

// Diagnosis is one line a person can act on.
func (p PodState) String() string {
	if p.Ready {
		if p.Node != "" {
			return fmt.Sprintf("Pod %s Ready on %s", p.Name, p.Node)
		}
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
	Timeout   time.Duration
	Interval  time.Duration              // poll interval; 0 means 1s
	OnChange  func(states []PodState)    // called when readiness changes
	OnObjects func(states []ObjectState) // called when a watched object's status changes
}

// Waited is what Wait saw last: the bare Pods, and every other object it
// follows by kstatus (see Watched).
type Waited struct {
	Pods    []PodState
	Objects []ObjectState
}

// Wait polls until every bare Pod of objs is Ready and every other object
// Watched follows is Current (Deployments rolled out, Jobs complete,
// custom resources Ready), as kstatus computes it. A cause that waiting
// cannot fix (a pull Secret the registry refuses, a crash loop, a Pod no
// node can take, a failed rollout) ends the wait at once, for a bare Pod
// or a workload's Pod alike; at the deadline it returns the state of
// everything, with reasons and events for the unready Pods, and a NotReady
// error naming them.
func (c *Client) Wait(ctx context.Context, ns string, objs []manifest.Object, o WaitOptions) (Waited, error) {
	if o.Interval == 0 {
		o.Interval = time.Second
	}
	pods := manifest.Pods(objs)
	var watched []manifest.Object
	for _, obj := range objs {
		if obj.GetKind() != "Pod" && Watched(obj) {
			watched = append(watched, obj)
		}
	}
	// Poll fast at first (Pods on a warm node are Ready within a second of
	// the apply), then back off to o.Interval.
	interval := 50 * time.Millisecond
	deadline := time.Now().Add(o.Timeout)
	lastReady, lastObjects := -1, ""
	for {
		var w Waited
		var err error
		if w.Pods, err = c.podStates(ctx, ns, pods); err != nil {
			return w, err
		}
		current := 0
		for _, obj := range watched {
			st, err := c.objectState(ctx, obj)
			if err != nil {
				return w, err
			}
			if st.Current() {
				current++
			}
			w.Objects = append(w.Objects, st)
		}
		ready := 0
		for _, s := range w.Pods {
			if s.Ready {
				ready++
			}
		}
		if ready != lastReady && o.OnChange != nil {
			o.OnChange(w.Pods)
		}
		lastReady = ready
		if sum := objectsSummary(w.Objects); sum != lastObjects && o.OnObjects != nil && len(w.Objects) > 0 {
			o.OnObjects(w.Objects)
			lastObjects = sum
		}
		if ready == len(pods) && current == len(watched) {
			return w, nil
		}
		for _, s := range w.Pods {
			if err := c.deletedPod(ctx, ns, s); err != nil {
				return w, err
			}
		}
		if err := c.classify(ctx, ns, w.Pods); err != nil {
			return w, err
		}
		for _, s := range w.Pods {
			for _, cause := range s.Causes {
				if cause.Fatal {
					return w, fail.New(fail.NotReady, cause.Fix, "Pod %s/%s: %s: %s", ns, s.Name, cause.Kind, cause.What)
				}
			}
		}
		for i := range w.Objects {
			st := &w.Objects[i]
			if cause, failed := rolloutFailure(ns, *st); failed {
				return w, fail.New(fail.NotReady, cause.Fix, "%s: %s: %s", st.Ref, cause.Kind, cause.What)
			}
			if err := c.classify(ctx, ns, st.podsOf); err != nil {
				return w, err
			}
			for _, p := range st.podsOf {
				for _, cause := range p.Causes {
					if cause.Fatal {
						return w, fail.New(fail.NotReady, cause.Fix, "%s: Pod %s/%s: %s: %s", st.Ref, ns, p.Name, cause.Kind, cause.What)
					}
				}
			}
		}
		if err := c.checkNodes(ctx, ns, w); err != nil {
			return w, err
		}
		if time.Now().After(deadline) {
			return c.diagnose(ctx, ns, w, o.Timeout)
		}
		select {
		case <-ctx.Done():
			return w, ctx.Err()
		case <-time.After(interval):
		}
		interval = min(interval*2, o.Interval)
	}
}

// checkNodes fails the wait when a node that unready Pods are bound to has
// a kubelet that stopped reporting.
func (c *Client) checkNodes(ctx context.Context, ns string, w Waited) error {
	unready := slices.Clone(w.Pods)
	for _, o := range w.Objects {
		unready = append(unready, o.podsOf...)
	}
	nodes := nodesOf(unready)
	if len(nodes) == 0 {
		return nil
	}
	silent := c.silentNodes(ctx, nodes)
	for _, s := range unready {
		if cause, ok := silent[s.Node]; ok && !s.Ready {
			return fail.New(fail.NotReady, cause.Fix, "Pod %s/%s on node %s: %s: %s", ns, s.Name, s.Node, cause.Kind, cause.What)
		}
	}
	return nil
}

func objectsSummary(states []ObjectState) string {
	var b strings.Builder
	for _, s := range states {
		b.WriteString(s.String())
		b.WriteByte('\n')
	}
	return b.String()
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
				events = c.PodEvents(ctx, ns, s.Name)
			}
			cause := Classify(w.Reason, w.Message, events)
			if cause.Kind == "pull-unauthorized" {
				cause = c.refinePull(ctx, ns, s.pod, cause)
			}
			if t := cs.LastTerminationState.Terminated; t != nil && (cause.Kind == "crash-loop" || w.Reason == "RunContainerError") {
				last := fmt.Sprintf("; last exit: %s, code %d", t.Reason, t.ExitCode)
				if t.Message != "" {
					last += ": " + shorten(t.Message)
				}
				cause.What += last
			}
			if cause.Kind == "crash-loop" {
				s.Logs = c.PodLogLines(ctx, ns, s.Name, cs.Name, true, 10)
				if len(s.Logs) > 0 {
					cause.What += "; last log lines: " + strings.Join(s.Logs, " | ")
				}
			}
			s.Causes = append(s.Causes, cause)
		}
	}
	return nil
}

// Diagnose classifies why pod is not Ready, as Wait does: its state, the
// causes of its containers' waits and, for a crash loop, its last log lines.
func (c *Client) Diagnose(ctx context.Context, pod *corev1.Pod) PodState {
	states := []PodState{stateOf(pod)}
	_ = c.classify(ctx, pod.Namespace, states)
	return states[0]
}

// refinePull tells the three reasons a registry refuses a kubelet apart,
// from what admission left in the Pod: no imagePullSecrets at all (the
// Secret is not on the Pod's ServiceAccount), a named Secret that does not
// exist, or Secrets whose credentials the registry refused.
func (c *Client) refinePull(ctx context.Context, ns string, pod *corev1.Pod, cause Cause) Cause {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	if len(pod.Spec.ImagePullSecrets) == 0 {
		cause.Kind = "pull-secret-not-on-serviceaccount"
		cause.What += "; the Pod has no imagePullSecrets: its ServiceAccount " + sa + " lists none"
		cause.Fix = "add imagePullSecrets: [{name: ghcr-secret}] to ServiceAccount " + sa + " (idopipe does for the manifest's ServiceAccounts) and recreate the Pod"
		return cause
	}
	var names, missing []string
	for _, ref := range pod.Spec.ImagePullSecrets {
		names = append(names, ref.Name)
		if _, err := c.Core.CoreV1().Secrets(ns).Get(ctx, ref.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			missing = append(missing, ref.Name)
		}
	}
	if len(missing) == len(names) {
		cause.Kind = "pull-secret-missing"
		cause.What += fmt.Sprintf("; the Pod's pull Secret %s does not exist in %s", strings.Join(missing, ", "), ns)
		cause.Fix = fmt.Sprintf("create Secret %s in namespace %s (idopipe deploy does), or fix the name in the imagePullSecrets of ServiceAccount %s", missing[0], ns, sa)
		return cause
	}
	cause.What += "; the registry refused the credentials in Secret " + strings.Join(names, ", ")
	cause.Fix = "the Secret's token is wrong, expired or cannot read the package: deploy again with a valid token, and check with `idopipe verify-pull IMAGE --as-cluster -n " + ns + "`"
	return cause
}

// PodEvents is what the Pod's events say, oldest first, one
// "Reason: message" each; none when they cannot be read (a diagnosis is
// best effort).
func (c *Client) PodEvents(ctx context.Context, ns, pod string) []string {
	evs, _ := c.podEvents(ctx, ns, pod)
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.Reason+": "+e.Message)
	}
	return out
}

// podEvents lists the Pod's events, oldest first.
func (c *Client) podEvents(ctx context.Context, ns, pod string) ([]corev1.Event, error) {
	evs, err := c.Core.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.SelectorFromSet(fields.Set{"involvedObject.name": pod, "involvedObject.kind": "Pod"}).String(),
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(evs.Items, func(a, b int) bool { return eventTime(evs.Items[a]).Before(eventTime(evs.Items[b])) })
	return evs.Items, nil
}

// PodLogLines is the last n non-blank lines of a container's log
// (container "" for a Pod's only container), of its previous run when
// previous is set (a crashing container's last words); none when the log
// cannot be read (a cluster without kubelets, or without log access).
func (c *Client) PodLogLines(ctx context.Context, ns, pod, container string, previous bool, n int64) []string {
	b, err := c.Core.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Previous: previous, TailLines: &n}).DoRaw(ctx)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func stateOf(p *corev1.Pod) PodState {
	s := PodState{Name: p.Name, Phase: string(p.Status.Phase), Node: p.Spec.NodeName, pod: p}
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
func (c *Client) diagnose(ctx context.Context, ns string, w Waited, timeout time.Duration) (Waited, error) {
	states := w.Pods
	var unready []string
	for _, o := range w.Objects {
		if !o.Current() {
			s := o.String()
			if len(o.Pods) > 0 {
				s += " (" + strings.Join(o.Pods, "; ") + ")"
			}
			unready = append(unready, s)
		}
	}
	for i := range states {
		if states[i].Ready {
			continue
		}
		unready = append(unready, states[i].String())
		evs, err := c.podEvents(ctx, ns, states[i].Name)
		if err != nil {
			continue // the diagnosis is best effort; the deadline error stands
		}
		for _, e := range lastN(evs, 10) {
			states[i].Events = append(states[i].Events, fmt.Sprintf("%s %s: %s", e.Type, e.Reason, strings.TrimSpace(e.Message)))
		}
	}
	return w, fail.New(fail.NotReady, fmt.Sprintf("read the Pod events above, or run kubectl describe pod -n %s", ns),
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
