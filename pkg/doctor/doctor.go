// Package doctor runs the release guide's ErrImagePull checklist against a
// deployed namespace: does the pull Secret exist with the right type and an
// entry for the registry, does the ServiceAccount reference it, do the Pods
// use that ServiceAccount, can the image be pulled with the Secret's
// credentials, and what do the Pods, their events and logs say.
package doctor

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
	"github.com/idopipe/idopipe/pkg/verify"
)

// Check is one line of the checklist.
type Check struct {
	Name  string     `json:"name"`
	OK    bool       `json:"ok"`
	Info  string     `json:"info,omitempty"`
	Fix   string     `json:"fix,omitempty"`
	Class fail.Class `json:"-"`
	err   error      // what failed, the cause of Run's error
}

func (c Check) String() string {
	if c.OK {
		s := "✓ " + c.Name
		if c.Info != "" {
			s += ": " + c.Info
		}
		return s
	}
	return "✗ " + c.Name + ": " + c.Info + " — fix: " + c.Fix
}

// Options name what to check.
type Options struct {
	Namespace  string
	SecretName string
	Image      string // the image the Pods should pull; "" finds it in the Pods
	CAFile     string // registry CA for the pull check
}

// Run runs every check it can; a check whose premise failed is skipped.
// The error is that of the first failed check.
func Run(ctx context.Context, kube *cluster.Client, o Options) ([]Check, error) {
	var checks []Check
	add := func(c Check) { checks = append(checks, c) }
	core := kube.Core.CoreV1()

	if _, err := core.Namespaces().Get(ctx, o.Namespace, metav1.GetOptions{}); err != nil {
		add(failed("namespace "+o.Namespace+" exists", err, "release into it, or pass -n", fail.Cluster))
		return checks, firstFailure(checks)
	}
	add(Check{Name: "namespace " + o.Namespace + " exists", OK: true})

	pods, err := core.Pods(o.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return checks, fail.Wrap(fail.Cluster, err, "", "cannot list Pods in %s", o.Namespace)
	}
	image, users := o.Image, podsRunning(pods.Items, o.Image)
	if image == "" {
		image, users = privateImage(pods.Items)
	}
	if image == "" {
		add(Check{Name: "a Pod runs the released image", Info: "no Pod in " + o.Namespace + " runs an image from a private registry", Fix: "pass --image, or release first", Class: fail.Cluster})
		return checks, firstFailure(checks)
	}
	ref, err := name.ParseReference(image)
	if err != nil {
		return checks, fail.WithCause(fail.Usage, err, "pass --image REGISTRY/OWNER/NAME:TAG", "invalid image %q", image)
	}
	reg := ref.Context().RegistryStr()

	creds, err := kube.PullCredentials(ctx, o.Namespace, o.SecretName, reg)
	secretCheck := "Secret " + o.SecretName + " exists, has type kubernetes.io/dockerconfigjson and an entry for " + reg
	if err != nil {
		add(Check{Name: secretCheck, Info: fail.OneLine(err.Error()), err: err, Fix: "rerun the release (it creates the Secret), or `kubectl create secret docker-registry " + o.SecretName + " -n " + o.Namespace + "`", Class: fail.Credentials})
	} else {
		add(Check{Name: secretCheck, OK: true})
	}

	for _, p := range users {
		sa := p.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		// The ServiceAccount admission plugin copies a ServiceAccount's
		// imagePullSecrets into each Pod when it is created: a Pod may list
		// the Secret while its ServiceAccount no longer does, and the next
		// Pod made for it will not. So a Pod with a ServiceAccount of its
		// own is checked against that ServiceAccount; one on "default"
		// (where idopipe puts the Secret on the Pod) by its own list.
		if slices.ContainsFunc(p.Spec.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == o.SecretName }) && sa == "default" {
			add(Check{Name: "Pod " + p.Name + " lists " + o.SecretName + " in its imagePullSecrets", OK: true})
			continue
		}
		acct, err := core.ServiceAccounts(o.Namespace).Get(ctx, sa, metav1.GetOptions{})
		name := "ServiceAccount " + sa + " of Pod " + p.Name + " references " + o.SecretName
		switch {
		case apierrors.IsNotFound(err):
			add(Check{Name: name, Info: "ServiceAccount " + sa + " does not exist", Fix: "apply the manifest's ServiceAccount, or set serviceAccountName", Class: fail.Cluster})
		case err != nil:
			add(failed(name, err, "check access to ServiceAccounts", fail.Cluster))
		case !slices.ContainsFunc(acct.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == o.SecretName }):
			add(Check{Name: name, Info: "its imagePullSecrets are " + refs(acct.ImagePullSecrets) + " (Pods created for it from now on cannot pull)", Fix: "add imagePullSecrets: [{name: " + o.SecretName + "}] to it (idopipe release does)", Class: fail.Credentials})
		default:
			add(Check{Name: name, OK: true, Info: "Pod " + p.Name + " uses ServiceAccount " + sa})
		}
	}

	if err == nil && creds.Username != "" {
		rep, perr := verify.Pull(ctx, ref, "", registry.Access{Creds: &creds, CAFile: o.CAFile})
		if perr != nil {
			add(Check{Name: image + " is pullable with the Secret's credentials", Info: fail.OneLine(perr.Error()), err: perr, Fix: "update the Secret with a valid token (rerun the release)", Class: fail.ClassOf(perr)})
		} else {
			add(Check{Name: image + " is pullable with the Secret's credentials", OK: true, Info: rep.String()})
		}
	}

	for _, p := range pods.Items {
		add(podCheck(ctx, kube, p))
	}
	return checks, firstFailure(checks)
}

// podCheck is one Pod's line: Ready, or why not, as Wait classifies it,
// with its events and last log lines.
func podCheck(ctx context.Context, kube *cluster.Client, p corev1.Pod) Check {
	st := kube.Diagnose(ctx, &p)
	c := Check{Name: "Pod " + p.Name + " Ready", OK: st.Ready, Info: string(p.Status.Phase)}
	if st.Ready {
		var running []string
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Running != nil {
				running = append(running, cs.Name+" ("+cs.ImageID+") running since "+cs.State.Running.StartedAt.UTC().Format("15:04:05"))
			}
		}
		c.Info += " on node " + p.Spec.NodeName + ", containers " + strings.Join(running, ", ")
		return c
	}
	var why []string
	for _, cause := range st.Causes {
		why = append(why, cause.Kind+" ("+cause.What+")")
		c.Fix = cause.Fix
	}
	for _, e := range kube.PodEvents(ctx, p.Namespace, p.Name) {
		why = append(why, "event "+e)
	}
	if logs := kube.PodLogLines(ctx, p.Namespace, p.Name, "", false, 5); len(logs) > 0 {
		why = append(why, "log: "+strings.Join(logs, " | "))
	}
	c.Info += ": " + strings.Join(why, "; ")
	if c.Fix == "" {
		c.Fix = "kubectl describe pod " + p.Name + " -n " + p.Namespace
	}
	c.Class = fail.NotReady
	return c
}

func failed(name string, err error, fix string, class fail.Class) Check {
	return Check{Name: name, Info: fail.OneLine(err.Error()), Fix: fix, Class: class, err: err}
}

func firstFailure(checks []Check) error {
	for _, c := range checks {
		if !c.OK {
			return fail.WithCause(c.Class, c.err, c.Fix, "%s: %s", c.Name, c.Info)
		}
	}
	return nil
}

// privateImage finds the image the release deployed: the first container
// image whose registry is not Docker Hub, and the Pods running it.
func privateImage(pods []corev1.Pod) (string, []corev1.Pod) {
	for _, p := range pods {
		for _, c := range p.Spec.Containers {
			ref, err := name.ParseReference(c.Image)
			if err == nil && ref.Context().RegistryStr() != name.DefaultRegistry {
				return c.Image, podsRunning(pods, c.Image)
			}
		}
	}
	return "", nil
}

func podsRunning(pods []corev1.Pod, image string) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		if slices.ContainsFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Image == image }) {
			out = append(out, p)
		}
	}
	return out
}

func refs(rs []corev1.LocalObjectReference) string {
	if len(rs) == 0 {
		return "empty"
	}
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.Name
	}
	return fmt.Sprint(names)
}
