package options

import (
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/buildkitd/kube"
	"github.com/idopipe/idopipe/pkg/fail"
)

// KubeBuilderOptions describe a BuildKit builder in a Kubernetes cluster
// (`idopipe buildkit create --kubernetes`): replicas, image, resources,
// placement, privileges, buildkitd's flags and config, storage.
type KubeBuilderOptions struct {
	Kubernetes   bool
	Replicas     int32
	Image        string
	Requests     []string // NAME=QUANTITY
	Limits       []string
	NodeSelector []string // KEY=VALUE
	// Platforms make one builder per platform; PlatformNodeSelectors,
	// PLATFORM=KEY=VALUE, place a platform's builder instead of its
	// kubernetes.io/os and kubernetes.io/arch.
	Platforms             []string
	PlatformNodeSelectors []string
	Tolerations           []string // KEY[=VALUE][:EFFECT]
	ServiceAccount        string
	Rootless              bool
	BuildkitdFlags        []string
	ConfigFile            string   // buildkitd.toml
	RegistryCAs           []string // HOST=FILE
	Storage               string
	StorageClass          string
	HostNetwork           bool
	Timeout               time.Duration
	DryRun                bool
	ForceConflicts        bool
}

// AddFlags adds the builder's flags.
func (o *KubeBuilderOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Kubernetes, "kubernetes", false, "create the builder in the Kubernetes cluster of the kubeconfig (the one kind of builder create makes)")
	fs.Int32Var(&o.Replicas, "replicas", 1, "buildkitd replicas; builds of the same images go to the same replica")
	fs.StringVar(&o.Image, "image", "", "buildkitd image holding buildkitd, buildctl and runc (default "+kube.DefaultImage+", with --rootless "+kube.DefaultRootlessImage+")")
	fs.StringSliceVar(&o.Requests, "requests", nil, "resource requests of each replica, e.g. cpu=1,memory=2Gi,ephemeral-storage=10Gi")
	fs.StringSliceVar(&o.Limits, "limits", nil, "resource limits of each replica, e.g. memory=4Gi,ephemeral-storage=20Gi (BuildKit's cache is kept below the ephemeral-storage limit)")
	fs.StringSliceVar(&o.NodeSelector, "node-selector", nil, "node labels the replicas must run on, KEY=VALUE (repeatable)")
	fs.StringSliceVar(&o.Platforms, "platform", nil, "make one builder per platform, NAME-OS-ARCH[-VARIANT], each on nodes of its platform (kubernetes.io/os, kubernetes.io/arch) building it natively; "+
		"a multi-platform build on kube://NAMESPACE/NAME then builds each platform on its own builder and joins them into one index (repeatable or comma-separated, e.g. linux/amd64,linux/arm64)")
	fs.StringArrayVar(&o.PlatformNodeSelectors, "platform-node-selector", nil, "PLATFORM=KEY=VALUE: place that platform's builder by this node label instead of kubernetes.io/os and kubernetes.io/arch (repeatable; e.g. linux/arm/v7=example.com/arm-variant=v7, or where the cluster labels nodes otherwise)")
	fs.StringArrayVar(&o.Tolerations, "toleration", nil, "a taint the replicas tolerate, KEY[=VALUE][:EFFECT] (repeatable; no VALUE: any value)")
	fs.StringVar(&o.ServiceAccount, "service-account", "", "ServiceAccount of the replicas (default the namespace's default)")
	fs.BoolVar(&o.Rootless, "rootless", false, "run buildkitd rootless (user 1000, --oci-worker-no-process-sandbox, unconfined seccomp and AppArmor; the nodes must allow user namespaces) instead of privileged")
	fs.StringArrayVar(&o.BuildkitdFlags, "buildkitd-flag", nil, "a flag for buildkitd, e.g. --debug (repeatable)")
	fs.StringVar(&o.ConfigFile, "buildkitd-config", "", "buildkitd.toml for the replicas (default: the OCI worker with garbage collection)")
	fs.StringArrayVar(&o.RegistryCAs, "builder-registry-ca", nil, "HOST[:PORT]=FILE: the builder trusts this CA (PEM) for a registry the builder pulls from or caches to (repeatable)")
	fs.StringVar(&o.Storage, "storage", "", "keep each replica's cache on a PersistentVolumeClaim of this size (a StatefulSet; it outlives the Pod, and `buildkit rm` keeps it); default an emptyDir, lost with the Pod")
	fs.StringVar(&o.StorageClass, "storage-class", "", "StorageClass of the --storage claims (default the cluster's)")
	fs.BoolVar(&o.HostNetwork, "host-network", false, "run the replicas in their node's network (hostNetwork, dnsPolicy ClusterFirstWithHostNet): for a registry or build cache only the node reaches, e.g. one on the node's 127.0.0.1; build steps share the node's network too")
	fs.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long to wait for the Pods to become Ready")
	fs.BoolVar(&o.DryRun, "dry-run", false, "validate the objects with a server-side dry run and write nothing; with -o yaml print them without asking the cluster")
	fs.BoolVar(&o.ForceConflicts, "force-conflicts", false, "take over fields owned by another field manager")
}

// Validate refuses a create without --kubernetes, flags that would break
// the connection, and malformed values, before any request.
func (o *KubeBuilderOptions) Validate() error {
	if !o.Kubernetes {
		return fail.New(fail.Usage, "pass --kubernetes (idopipe's own local buildkitd is `idopipe buildkit start`)", "create makes a builder in a Kubernetes cluster only")
	}
	if o.Timeout < 0 {
		return fail.New(fail.Usage, "pass --timeout 0 or more, e.g. 3m", "--timeout %s is negative", o.Timeout)
	}
	for _, f := range o.BuildkitdFlags {
		name, _, _ := strings.Cut(f, "=")
		switch name {
		case "--addr":
			return fail.New(fail.Usage, "drop --buildkitd-flag "+f, "buildkitd must listen on its default socket: idopipe reaches it with `buildctl dial-stdio`")
		case "--config":
			return fail.New(fail.Usage, "pass the file with --buildkitd-config", "--buildkitd-flag %s: the config comes from the builder's ConfigMap", f)
		case "--rootless", "--oci-worker-no-process-sandbox":
			return fail.New(fail.Usage, "pass --rootless", "--buildkitd-flag %s: rootless needs the Pod's settings too", f)
		case "--oci-worker-platform":
			if len(o.Platforms) > 0 {
				return fail.New(fail.Usage, "drop --buildkitd-flag "+f, "--buildkitd-flag %s: with --platform each builder serves its own platform", f)
			}
		}
		if !strings.HasPrefix(f, "-") {
			return fail.New(fail.Usage, "give one flag per --buildkitd-flag, e.g. --buildkitd-flag=--debug", "--buildkitd-flag %q is not a flag", f)
		}
	}
	_, err := o.config("", "")
	return err
}

// Config is the builder ns/name these options describe; it reads the
// config and CA files.
func (o *KubeBuilderOptions) Config(ns, name string) (kube.Config, error) {
	c, err := o.config(ns, name)
	if err != nil {
		return c, err
	}
	return c, c.Validate()
}

func (o *KubeBuilderOptions) config(ns, name string) (kube.Config, error) {
	c := kube.Config{
		Namespace: ns, Name: name, Replicas: o.Replicas, Image: o.Image, ServiceAccount: o.ServiceAccount,
		Rootless: o.Rootless, BuildkitdFlags: o.BuildkitdFlags, Storage: o.Storage, StorageClass: o.StorageClass,
		HostNetwork: o.HostNetwork,
	}
	var err error
	if c.Requests, err = resources("--requests", o.Requests); err != nil {
		return c, err
	}
	if c.Limits, err = resources("--limits", o.Limits); err != nil {
		return c, err
	}
	for _, kv := range o.NodeSelector {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return c, fail.New(fail.Usage, "use KEY=VALUE", "--node-selector %q is not KEY=VALUE", kv)
		}
		if c.NodeSelector == nil {
			c.NodeSelector = map[string]string{}
		}
		c.NodeSelector[k] = v
	}
	if c.Platforms, c.PlatformNodeSelectors, err = o.platforms(); err != nil {
		return c, err
	}
	for _, t := range o.Tolerations {
		tol, err := toleration(t)
		if err != nil {
			return c, err
		}
		c.Tolerations = append(c.Tolerations, tol)
	}
	if o.ConfigFile != "" {
		b, err := os.ReadFile(o.ConfigFile)
		if err != nil {
			return c, fail.New(fail.Usage, "give the path of a buildkitd.toml", "cannot read --buildkitd-config %s", o.ConfigFile)
		}
		c.ConfigTOML = string(b)
	}
	for _, hf := range o.RegistryCAs {
		host, file, ok := strings.Cut(hf, "=")
		if !ok || host == "" || file == "" {
			return c, fail.New(fail.Usage, "use HOST[:PORT]=FILE", "--builder-registry-ca %q is not HOST=FILE", hf)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return c, fail.New(fail.Usage, "give the path of the registry's CA certificate (PEM)", "cannot read --builder-registry-ca %s", file)
		}
		if c.RegistryCAs == nil {
			c.RegistryCAs = map[string][]byte{}
		}
		c.RegistryCAs[host] = b
	}
	return c, nil
}

// platforms reads --platform (each once, known, in normal form) and
// --platform-node-selector (each for one of them).
func (o *KubeBuilderOptions) platforms() ([]string, map[string]map[string]string, error) {
	var list []string
	for _, item := range o.Platforms {
		for p := range strings.SplitSeq(item, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			n, err := build.ParsePlatforms([]string{p})
			if err != nil {
				return nil, nil, err
			}
			if slices.Contains(list, n[0]) {
				return nil, nil, fail.New(fail.Usage, "name each platform once", "--platform %s is given twice", n[0])
			}
			list = append(list, n[0])
		}
	}
	var sels map[string]map[string]string
	for _, s := range o.PlatformNodeSelectors {
		p, kv, ok := strings.Cut(s, "=")
		k, v, ok2 := strings.Cut(kv, "=")
		if !ok || !ok2 || p == "" || k == "" {
			return nil, nil, fail.New(fail.Usage, "use PLATFORM=KEY=VALUE, e.g. linux/arm64=kubernetes.io/arch=arm64", "--platform-node-selector %q is not PLATFORM=KEY=VALUE", s)
		}
		n, err := build.ParsePlatforms([]string{p})
		if err != nil {
			return nil, nil, err
		}
		if !slices.Contains(list, n[0]) {
			fix := "add --platform " + n[0]
			if len(list) > 0 {
				fix += ", or give selectors only for " + strings.Join(list, ", ")
			}
			return nil, nil, fail.New(fail.Usage, fix, "--platform-node-selector %s: the builder has no platform %s", s, n[0])
		}
		if sels == nil {
			sels = map[string]map[string]string{}
		}
		if sels[n[0]] == nil {
			sels[n[0]] = map[string]string{}
		}
		sels[n[0]][k] = v
	}
	return list, sels, nil
}

var resourceNames = map[string]corev1.ResourceName{
	"cpu": corev1.ResourceCPU, "memory": corev1.ResourceMemory, "ephemeral-storage": corev1.ResourceEphemeralStorage,
}

func resources(flag string, kvs []string) (corev1.ResourceList, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	out := corev1.ResourceList{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		name, known := resourceNames[k]
		if !ok || !known {
			return nil, fail.New(fail.Usage, "use cpu=, memory= or ephemeral-storage=, e.g. "+flag+" cpu=1,memory=2Gi", "%s %q is not NAME=QUANTITY", flag, kv)
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fail.New(fail.Usage, "give a quantity such as 500m, 2Gi", "%s %s=%q is not a quantity", flag, k, v)
		}
		out[name] = q
	}
	return out, nil
}

// toleration parses KEY[=VALUE][:EFFECT].
func toleration(s string) (corev1.Toleration, error) {
	bad := fail.New(fail.Usage, "use KEY[=VALUE][:EFFECT] with EFFECT NoSchedule, PreferNoSchedule or NoExecute", "--toleration %q is malformed", s)
	rest, effect, hasEffect := strings.Cut(s, ":")
	key, value, hasValue := strings.Cut(rest, "=")
	if key == "" {
		return corev1.Toleration{}, bad
	}
	t := corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists}
	if hasValue {
		t.Operator, t.Value = corev1.TolerationOpEqual, value
	}
	if hasEffect {
		switch e := corev1.TaintEffect(effect); e {
		case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
			t.Effect = e
		default:
			return corev1.Toleration{}, bad
		}
	}
	return t, nil
}
