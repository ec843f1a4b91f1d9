package kube

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/idopipe/idopipe/pkg/fail"
)

// Scheme is the --buildkit-host scheme of a builder in a cluster.
const Scheme = "kube://"

// ParseAddress splits kube://NAMESPACE/NAME.
func ParseAddress(addr string) (ns, name string, err error) {
	rest, ok := strings.CutPrefix(addr, Scheme)
	if ok {
		ns, name, ok = strings.Cut(rest, "/")
	}
	if !ok || ns == "" || name == "" || strings.ContainsAny(name, "/?#") || strings.ContainsAny(ns, "?#") {
		return "", "", fail.New(fail.Usage, "use kube://NAMESPACE/NAME, the builder `idopipe buildkit create --kubernetes -n NAMESPACE NAME` made",
			"BuildKit address %q is not kube://NAMESPACE/NAME", addr)
	}
	return ns, name, nil
}

// RBACFix names the permissions a client of a builder needs.
const RBACFix = "grant it get and list on pods and create on pods/exec in that namespace (deploy/buildkit/rbac.yaml)"

// Dialer connects to a builder's buildkitd through the API server:
// pods/exec of `buildctl dial-stdio` in one of its Ready Pods.
type Dialer struct {
	Config    *rest.Config
	Core      kubernetes.Interface
	Namespace string
	Name      string
	// Platform is the platform of a per-platform builder's member
	// (ForPlatforms), "" otherwise.
	Platform string
	// Notify is told, in one line, which Pod a connection goes to.
	Notify func(string)
}

// NewDialer is a Dialer for builder name in namespace ns of the cluster
// cfg reaches.
func NewDialer(cfg *rest.Config, ns, name string) (*Dialer, error) {
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fail.Wrap(fail.Cluster, err, "check the kubeconfig", "cannot configure the Kubernetes client")
	}
	return &Dialer{Config: cfg, Core: core, Namespace: ns, Name: name}, nil
}

// String is the builder's address.
func (d *Dialer) String() string { return Address(d.Namespace, d.Name) }

// Dial opens a connection to buildkitd in the Ready replica key hashes to
// (the same key, the same replica while the set of Ready replicas stays),
// and returns once the exec stream is up.
func (d *Dialer) Dial(ctx context.Context, key string) (net.Conn, error) {
	pod, err := d.choose(ctx, key)
	if err != nil {
		return nil, err
	}
	if d.Notify != nil {
		if d.Platform != "" {
			d.Notify(fmt.Sprintf("building %s on %s, Pod %s", d.Platform, d, pod))
		} else {
			d.Notify(fmt.Sprintf("building on %s, Pod %s", d, pod))
		}
	}
	return d.exec(ctx, pod)
}

// Pods lists the builder's Ready replicas, sorted by name; the error says
// in one line why there is none.
func (d *Dialer) Pods(ctx context.Context) ([]string, error) {
	list, err := d.Core.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(Selector(d.Name)).String()})
	if err != nil {
		return nil, d.explain(ctx, err, "list pods")
	}
	var ready, other []string
	for i := range list.Items {
		p := &list.Items[i]
		if podReady(p) {
			ready = append(ready, p.Name)
		} else {
			other = append(other, p.Name+" "+podState(p))
		}
	}
	if len(ready) > 0 {
		sort.Strings(ready)
		return ready, nil
	}
	if len(other) > 0 {
		return nil, fail.New(fail.Daemon, "wait until it is Ready (`idopipe buildkit create` waits), or see `kubectl -n "+d.Namespace+" describe pod "+strings.Fields(other[0])[0]+"`",
			"builder %s has no Ready replica: %s", d, strings.Join(other, ", "))
	}
	// No Pod: a wrong namespace, or no builder of that name.
	if _, err := d.Core.CoreV1().Namespaces().Get(ctx, d.Namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return nil, fail.New(fail.Daemon, "fix the namespace in kube://NAMESPACE/NAME",
			"builder %s: namespace %s does not exist", d, d.Namespace)
	}
	return nil, fail.New(fail.Daemon, "create it with `idopipe buildkit create --kubernetes -n "+d.Namespace+" "+d.Name+"`, or fix kube://NAMESPACE/NAME",
		"no builder %s in namespace %s (no Pod labelled %s=%s)", d.Name, d.Namespace, LabelInstance, d.Name)
}

// Members are the builders of a per-platform builder (`buildkit create
// --platform`), one Dialer each with its Platform, sorted by platform,
// found from its Pods' labels; nil when the name has none (it is one
// builder that builds every platform itself). A platform whose Pods are
// all terminating (dropped by a rerun) is not among them.
func (d *Dialer) Members(ctx context.Context) ([]*Dialer, error) {
	list, err := d.Core.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(map[string]string{LabelSet: d.Name, LabelName: nameValue}).String()})
	if err != nil {
		return nil, d.explain(ctx, err, "list pods")
	}
	have := map[string]string{} // platform → member
	for i := range list.Items {
		p := &list.Items[i]
		plat, member := p.Annotations[AnnotationPlatform], p.Labels[LabelInstance]
		if p.DeletionTimestamp != nil || plat == "" || member == "" {
			continue
		}
		have[plat] = member
	}
	var out []*Dialer
	for _, p := range slices.Sorted(maps.Keys(have)) {
		out = append(out, &Dialer{Config: d.Config, Core: d.Core, Namespace: d.Namespace, Name: have[p], Platform: p, Notify: d.Notify})
	}
	return out, nil
}

// ForPlatforms finds the builders of a per-platform builder that build
// platforms, one Dialer each in the order given. nil, nil: the name has no
// per-platform builders, and is one builder that builds every platform
// itself. A platform without a builder of its own, or no platform named,
// is an error saying which builders there are.
func (d *Dialer) ForPlatforms(ctx context.Context, platforms []string) ([]*Dialer, error) {
	members, err := d.Members(ctx)
	if err != nil || len(members) == 0 {
		return nil, err
	}
	var names []string
	byPlatform := map[string]*Dialer{}
	for _, m := range members {
		names = append(names, m.Platform)
		byPlatform[m.Platform] = m
	}
	if len(platforms) == 0 {
		return nil, fail.New(fail.Usage, "name the platforms to build, one or more of "+strings.Join(names, ", "),
			"builder %s builds each platform on a builder of its own (%s), and the build names no platform", d, strings.Join(names, ", "))
	}
	out := make([]*Dialer, 0, len(platforms))
	for _, p := range platforms {
		n, err := NormalizePlatform(p)
		if err != nil {
			return nil, err
		}
		m, ok := byPlatform[n]
		if !ok {
			return nil, fail.New(fail.Usage, fmt.Sprintf("add it: `idopipe buildkit create --kubernetes -n %s %s --platform %s --platform %s`", d.Namespace, d.Name, strings.Join(names, " --platform "), n),
				"builder %s has no builder for platform %s (it builds %s)", d, n, strings.Join(names, ", "))
		}
		out = append(out, m)
	}
	return out, nil
}

// choose picks the replica for key by rendezvous hashing over the Ready
// replicas: each key goes to the Pod with the highest hash of key and Pod
// name, so adding or losing a replica moves only the keys that were on it.
func (d *Dialer) choose(ctx context.Context, key string) (string, error) {
	pods, err := d.Pods(ctx)
	if err != nil {
		return "", err
	}
	return Choose(pods, key), nil
}

// Choose is the replica of pods that key goes to.
func Choose(pods []string, key string) string {
	best, bestScore := "", uint64(0)
	for _, p := range pods {
		h := fnv.New64a()
		h.Write([]byte(key))
		h.Write([]byte{0})
		h.Write([]byte(p))
		if s := h.Sum64(); best == "" || s > bestScore {
			best, bestScore = p, s
		}
	}
	return best
}

// explain turns an API error of the dialer into one line with the fix.
func (d *Dialer) explain(ctx context.Context, err error, what string) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	switch {
	case apierrors.IsForbidden(err) || strings.Contains(err.Error(), "forbidden"):
		return fail.New(fail.Cluster, RBACFix+", or fix NAMESPACE in kube://NAMESPACE/NAME if it is not the builder's",
			"builder %s: the kubeconfig's identity may not %s in namespace %s", d, what, d.Namespace)
	case apierrors.IsUnauthorized(err):
		return fail.Wrap(fail.Cluster, err, "refresh the credentials in the kubeconfig", "builder %s: the API server rejected the kubeconfig's credentials", d)
	}
	return fail.Wrap(fail.Daemon, err, "check that the API server at "+d.Config.Host+" is up", "builder %s: cannot %s", d, what)
}

// streamContext is the context of an exec stream: not cancelled with
// ctx, and with a logger that drops what client-go's stream copiers log.
// When the builder's Pod goes away mid-build, the stdin copier's
// "Copying stdin failed" would otherwise reach stderr through klog after
// idopipe's own one-line error; the stream's end is reported through
// ended and explained there.
func streamContext(ctx context.Context) context.Context {
	return klog.NewContext(context.WithoutCancel(ctx), logr.Discard())
}

// exec starts `buildctl dial-stdio` in pod and waits until the stream is
// up: the executor reads stdin only once the connection is made.
func (d *Dialer) exec(ctx context.Context, pod string) (net.Conn, error) {
	req := d.Core.CoreV1().RESTClient().Post().Namespace(d.Namespace).Resource("pods").Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: Container,
			Command:   []string{"buildctl", "dial-stdio"},
			Stdin:     true, Stdout: true, Stderr: true,
		}, scheme.ParameterCodec)
	ex, err := executor(d.Config, req.URL())
	if err != nil {
		return nil, fail.Wrap(fail.Cluster, err, "check the kubeconfig", "builder %s: cannot set up exec", d)
	}
	c := newConn(pod, d.Namespace)
	// The stream lives as long as the connection, not the dial's context.
	sctx, cancel := context.WithCancel(streamContext(ctx))
	c.cancel = cancel
	go func() {
		err := ex.StreamWithContext(sctx, remotecommand.StreamOptions{Stdin: c.execStdin(), Stdout: c.stdoutW, Stderr: &c.stderr})
		c.ended(err)
	}()
	select {
	case <-c.up:
		return c, nil
	case <-c.done:
		cancel()
		err := c.streamErr()
		if raw := c.raw; raw != nil && (apierrors.IsForbidden(raw) || strings.Contains(raw.Error(), "forbidden")) {
			return nil, fail.New(fail.Cluster, RBACFix, "builder %s: the kubeconfig's identity may not create pods/exec in namespace %s (the API server: %s)", d, d.Namespace, serverSaid(raw))
		}
		return nil, fail.Wrap(fail.Daemon, err, "check that Pod "+pod+" runs buildctl (the builder's image must hold it)", "builder %s: cannot start `buildctl dial-stdio` in Pod %s", d, pod)
	case <-ctx.Done():
		_ = c.Close()
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		_ = c.Close()
		return nil, fail.New(fail.Daemon, "check that the node of Pod "+pod+" answers the API server (kubectl exec)", "builder %s: the exec stream into Pod %s did not open in 30s", d, pod)
	}
}

// executor is websocket exec (the API server's current protocol) with
// SPDY as the fallback for servers or proxies that refuse the upgrade.
func executor(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
	spdy, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
	if err != nil {
		return nil, err
	}
	ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
	if err != nil {
		return nil, err
	}
	return remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
}

// serverSaid is the API server's message of err, short.
func serverSaid(err error) string {
	var se *apierrors.StatusError
	if errors.As(err, &se) {
		return oneLine(se.ErrStatus.Message)
	}
	return oneLine(err.Error())
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podState is a Pod's state in a few words: "(Pending: ContainerCreating)".
func podState(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "(terminating)"
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			return "(" + string(p.Status.Phase) + ": " + w.Reason + ")"
		}
		if !cs.Ready && cs.State.Running != nil {
			return "(" + string(p.Status.Phase) + ": buildkitd not answering yet)"
		}
	}
	return "(" + string(p.Status.Phase) + ")"
}

var errStreamEnded = errors.New("buildctl dial-stdio ended")
