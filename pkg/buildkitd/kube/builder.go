package kube

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	bkconfig "github.com/moby/buildkit/cmd/buildkitd/config"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
)

// BuildKitVersion is the BuildKit release idopipe is built and tested
// with (go.mod's github.com/moby/buildkit; a test keeps them equal).
const BuildKitVersion = "v0.34.2"

// The images a builder runs unless Config.Image names another.
const (
	DefaultImage         = "moby/buildkit:" + BuildKitVersion
	DefaultRootlessImage = "moby/buildkit:" + BuildKitVersion + "-rootless"
)

// Container is the builder's container: the one exec'd into.
const Container = "buildkitd"

// Labels every builder object carries; a builder's Pods are selected by
// the first two.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	nameValue      = "buildkitd"
	managedBy      = "idopipe"
)

// Where the builder's files are in its container.
const (
	configDir  = "/etc/buildkit"
	configFile = configDir + "/buildkitd.toml"
	stateDir   = "/var/lib/buildkit"
	// The rootless image keeps its state in the user's home.
	rootlessStateDir = "/home/user/.local/share/buildkit"
)

// Config is a builder: where it runs, how many replicas, and how.
type Config struct {
	Namespace string
	Name      string
	Replicas  int32
	// Image is the buildkitd image; "" is DefaultImage (DefaultRootlessImage
	// when Rootless). It must hold buildkitd, buildctl and runc.
	Image    string
	Requests corev1.ResourceList
	Limits   corev1.ResourceList
	// NodeSelector and Tolerations place the builder's Pods.
	NodeSelector map[string]string
	Tolerations  []corev1.Toleration
	// ServiceAccount runs the Pods; "" is the namespace's default.
	ServiceAccount string
	// Rootless runs buildkitd as user 1000 without privileges
	// (--oci-worker-no-process-sandbox, unconfined seccomp and AppArmor);
	// the node must allow unprivileged user namespaces; the Pod's fsGroup
	// 1000 makes a claim writable. Otherwise the container is privileged.
	Rootless bool
	// BuildkitdFlags are added to buildkitd's command line.
	BuildkitdFlags []string
	// ConfigTOML is the buildkitd.toml; "" is idopipe's default (the OCI
	// worker with garbage collection). RegistryCAs add a [registry] table
	// each.
	ConfigTOML  string
	RegistryCAs map[string][]byte // registry host[:port] → CA certificates (PEM)
	// Storage, when set, is the size of a PersistentVolumeClaim per replica
	// holding BuildKit's state (a StatefulSet); else an emptyDir (a
	// Deployment), lost with the Pod.
	Storage      string
	StorageClass string
	// HostNetwork runs the replicas in their node's network namespace
	// (hostNetwork, dnsPolicy ClusterFirstWithHostNet): for a registry the
	// builder pulls from or caches to that only the node reaches, such as
	// one on the node's 127.0.0.1. Build steps then share the node's
	// network too.
	HostNetwork bool
	// Platforms, when set, make one builder per platform instead of one
	// (see Members): each builds its platform natively on nodes of that
	// platform, chosen by PlatformNodeSelectors[platform] when given, else
	// by kubernetes.io/os and kubernetes.io/arch (NodeSelector applies to
	// every one). Each in normal form (NormalizePlatform).
	Platforms             []string
	PlatformNodeSelectors map[string]map[string]string

	// set and platform are a member's: the builder it belongs to and the
	// platform it builds.
	set, platform string
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Validate refuses what the API server would refuse later, or what would
// make a builder that cannot start, in one line naming the option.
func (c Config) Validate() error {
	if c.Namespace == "" {
		return fail.New(fail.Usage, "pass -n NAMESPACE", "no namespace for the builder")
	}
	if !nameRE.MatchString(c.Name) || len(c.Name) > 52 {
		return fail.New(fail.Usage, "use lower-case letters, digits and '-', at most 52 characters", "builder name %q is not a valid object name", c.Name)
	}
	if c.Replicas < 1 {
		return fail.New(fail.Usage, "pass --replicas 1 or more", "--replicas %d: a builder needs at least one replica", c.Replicas)
	}
	if err := c.validatePlatforms(); err != nil {
		return err
	}
	for _, m := range append([]Config{c}, c.Members()...) {
		if err := validSelector(m.NodeSelector); err != nil {
			return err
		}
	}
	if _, ok := c.Limits[corev1.ResourceEphemeralStorage]; ok {
		if r, ok := c.Requests[corev1.ResourceEphemeralStorage]; ok && r.Cmp(c.Limits[corev1.ResourceEphemeralStorage]) > 0 {
			return fail.New(fail.Usage, "make the ephemeral-storage request at most the limit", "ephemeral-storage request %s exceeds its limit %s", r.String(), ptrQ(c.Limits[corev1.ResourceEphemeralStorage]))
		}
	}
	for name, r := range c.Requests {
		if l, ok := c.Limits[name]; ok && r.Cmp(l) > 0 {
			return fail.New(fail.Usage, "make each request at most its limit", "%s request %s exceeds its limit %s", name, ptrQ(r), ptrQ(l))
		}
	}
	if c.Storage != "" {
		if _, err := resource.ParseQuantity(c.Storage); err != nil {
			return fail.New(fail.Usage, "give a size such as 20Gi", "--storage %q is not a quantity", c.Storage)
		}
	} else if c.StorageClass != "" {
		return fail.New(fail.Usage, "add --storage SIZE, or drop --storage-class", "--storage-class needs --storage: the state is on an emptyDir without it")
	}
	if _, err := c.buildkitdTOML(); err != nil {
		return err
	}
	return nil
}

func validSelector(sel map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		v := sel[k]
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fail.New(fail.Usage, "use KEY=VALUE with a label key", "node selector key %q: %s", k, errs[0])
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return fail.New(fail.Usage, "use KEY=VALUE with a label value", "node selector %s=%q: %s", k, v, errs[0])
		}
	}
	return nil
}

func ptrQ(q resource.Quantity) string { return q.String() }

// image is the image the builder runs.
func (c Config) image() string {
	switch {
	case c.Image != "":
		return c.Image
	case c.Rootless:
		return DefaultRootlessImage
	}
	return DefaultImage
}

// Selector is the label selector of the builder's Pods.
func (c Config) Selector() map[string]string { return Selector(c.Name) }

// Selector is the label selector of builder name's Pods.
func Selector(name string) map[string]string {
	return map[string]string{LabelName: nameValue, LabelInstance: name}
}

// labels are every object's of the builder; a member's carry its set and
// platform too.
func (c Config) labels() map[string]string {
	l := c.Selector()
	l[LabelManagedBy] = managedBy
	if c.set != "" {
		l[LabelSet] = c.set
		l[LabelPlatform] = platformLabel(c.platform)
	}
	return l
}

// annotations are a member's workload's and Pods': its platform as written.
func (c Config) annotations() map[string]string {
	if c.platform == "" {
		return nil
	}
	return map[string]string{AnnotationPlatform: c.platform}
}

// configMapName is the ConfigMap holding the builder's buildkitd.toml.
func configMapName(name string) string { return name + "-config" }

// caKey is the ConfigMap key (and file name) of a registry's CA.
func caKey(host string) string {
	return "ca-" + strings.NewReplacer(":", "-", "/", "-").Replace(host) + ".pem"
}

// defaultTOML is the buildkitd.toml of a builder given none: the OCI
// worker (runc) with garbage collection, no containerd worker.
const defaultTOML = `# buildkitd.toml of an idopipe builder (idopipe buildkit create --kubernetes).
[worker.oci]
  enabled = true
  gc = true
[worker.containerd]
  enabled = false
`

// buildkitdTOML is the builder's configuration: the user's (checked with
// BuildKit's own parser) or the default, a [registry] table for each CA,
// and, with an ephemeral-storage limit, garbage collection kept below it.
func (c Config) buildkitdTOML() (string, error) {
	base := c.ConfigTOML
	if base == "" {
		base = defaultTOML
	}
	parsed, err := bkconfig.Load(strings.NewReader(base))
	if err != nil {
		return "", fail.New(fail.Usage, "fix the buildkitd.toml given with --buildkitd-config", "buildkitd.toml does not parse: %v", err)
	}
	var b strings.Builder
	b.WriteString(strings.TrimRight(base, "\n") + "\n")
	if lim, ok := c.Limits[corev1.ResourceEphemeralStorage]; ok && parsed.Workers.OCI.GCMaxUsedSpace == (bkconfig.DiskSpace{}) && parsed.Workers.OCI.GCKeepStorage == (bkconfig.DiskSpace{}) {
		if c.ConfigTOML != "" {
			return "", fail.New(fail.Usage, "set [worker.oci] maxUsedSpace in it below the limit, or drop the ephemeral-storage limit",
				"the ephemeral-storage limit %s would evict a builder whose --buildkitd-config sets no [worker.oci] maxUsedSpace", lim.String())
		}
		// BuildKit's default cap is measured against the node's disk, not
		// the Pod's limit (buildkit#1169): keep its cache at 80% of the limit.
		mb := lim.Value() * 8 / 10 / (1 << 20)
		out := strings.Replace(b.String(), "  gc = true\n", fmt.Sprintf("  gc = true\n  maxUsedSpace = \"%dMB\"\n", mb), 1)
		b.Reset()
		b.WriteString(out)
	}
	for _, host := range slices.Sorted(maps.Keys(c.RegistryCAs)) {
		if _, ok := parsed.Registries[host]; ok {
			return "", fail.New(fail.Usage, "drop the builder's registry CA for "+host+", or set its ca in the buildkitd.toml",
				"registry %s has a [registry] table in the buildkitd config and a CA of its own", host)
		}
		if !bytes.Contains(c.RegistryCAs[host], []byte("-----BEGIN CERTIFICATE-----")) {
			return "", fail.New(fail.Usage, "give a PEM certificate file", "the builder's registry CA for %s is not a PEM certificate", host)
		}
		// A registry given a CA speaks TLS: BuildKit would otherwise
		// talk plain HTTP to one on localhost or 127.0.0.1.
		fmt.Fprintf(&b, "[registry.%q]\n  http = false\n  ca = [%q]\n", host, configDir+"/"+caKey(host))
	}
	return b.String(), nil
}

// Objects are the builder's objects in the order they are applied: its
// ConfigMap, then its Deployment (a StatefulSet with Storage); with
// Platforms, those of each platform's builder in turn.
func Objects(c Config) ([]manifest.Object, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var out []manifest.Object
	for _, m := range c.Members() {
		objs, err := m.objects()
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// objects are one builder's ConfigMap and workload.
func (c Config) objects() ([]manifest.Object, error) {
	toml, err := c.buildkitdTOML()
	if err != nil {
		return nil, err
	}
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: configMapName(c.Name), Namespace: c.Namespace, Labels: c.labels()},
		Data:       map[string]string{"buildkitd.toml": toml},
	}
	for host, pem := range c.RegistryCAs {
		cm.Data[caKey(host)] = string(pem)
	}
	pod := c.podTemplate(toml)
	var workload runtime.Object
	meta := metav1.ObjectMeta{Name: c.Name, Namespace: c.Namespace, Labels: c.labels(), Annotations: c.annotations()}
	selector := &metav1.LabelSelector{MatchLabels: c.Selector()}
	if c.Storage == "" {
		workload = &appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: meta,
			Spec:       appsv1.DeploymentSpec{Replicas: &c.Replicas, Selector: selector, Template: pod},
		}
	} else {
		pvc := corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "state"},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(c.Storage)}},
			},
		}
		if c.StorageClass != "" {
			pvc.Spec.StorageClassName = &c.StorageClass
		}
		workload = &appsv1.StatefulSet{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
			ObjectMeta: meta,
			Spec: appsv1.StatefulSetSpec{
				Replicas: &c.Replicas, Selector: selector, Template: pod, ServiceName: c.Name,
				// Replicas are independent builders: start them all at once.
				PodManagementPolicy:  appsv1.ParallelPodManagement,
				VolumeClaimTemplates: []corev1.PersistentVolumeClaim{pvc},
			},
		}
	}
	var out []manifest.Object
	for i, o := range []runtime.Object{cm, workload} {
		u, err := toUnstructured(o)
		if err != nil {
			return nil, fail.Wrap(fail.Internal, err, "", "cannot convert the builder's %T", o)
		}
		out = append(out, manifest.Object{Unstructured: u, Source: fmt.Sprintf("builder %s/%s#%d", c.Namespace, c.Name, i+1)})
	}
	return out, nil
}

// podTemplate is the builder's Pod: buildkitd on its default socket,
// Ready when `buildctl debug workers` answers, its config from the
// ConfigMap and its state on an emptyDir or the claim. The config's hash
// is an annotation, so a changed config rolls the Pods.
func (c Config) podTemplate(toml string) corev1.PodTemplateSpec {
	probe := func(initial, period int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:        corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"buildctl", "debug", "workers"}}},
			InitialDelaySeconds: initial, PeriodSeconds: period, TimeoutSeconds: 10,
		}
	}
	state := stateDir
	args := append([]string{"--config", configFile}, c.BuildkitdFlags...)
	sc := &corev1.SecurityContext{Privileged: ptr(true)}
	if c.Rootless {
		state = rootlessStateDir
		args = append(args, "--oci-worker-no-process-sandbox")
		sc = &corev1.SecurityContext{
			RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(1000)),
			SeccompProfile:  &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined},
			AppArmorProfile: &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined},
		}
	}
	ctr := corev1.Container{
		Name:            Container,
		Image:           c.image(),
		Args:            args,
		ReadinessProbe:  probe(1, 5),
		LivenessProbe:   probe(15, 30),
		SecurityContext: sc,
		Resources:       corev1.ResourceRequirements{Requests: c.Requests, Limits: c.Limits},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "config", MountPath: configDir, ReadOnly: true},
			{Name: "state", MountPath: state},
		},
	}
	spec := corev1.PodSpec{
		Containers:         []corev1.Container{ctr},
		NodeSelector:       c.NodeSelector,
		Tolerations:        c.Tolerations,
		ServiceAccountName: c.ServiceAccount,
		HostNetwork:        c.HostNetwork,
		Volumes: []corev1.Volume{{
			Name:         "config",
			VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: configMapName(c.Name)}}},
		}},
	}
	if c.Rootless {
		// A claim's filesystem is root's: fsGroup makes the volumes
		// writable by the image's group (buildkitd, user 1000, cannot
		// lock its state otherwise).
		spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: ptr(int64(1000))}
	}
	if c.HostNetwork {
		// The node's network, and still the cluster's DNS.
		spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
	}
	if c.Storage == "" {
		// Not the container's own (overlay) filesystem: overlay on overlay
		// fails, and an emptyDir is counted against ephemeral-storage.
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "state", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{
			Labels:      c.labels(),
			Annotations: podAnnotations(c.annotations(), configHash(toml, c.RegistryCAs)),
		},
		Spec: spec,
	}
}

func ptr[T any](v T) *T { return &v }

// podAnnotations are the Pods' annotations: the config's hash, and a
// member's platform.
func podAnnotations(a map[string]string, hash string) map[string]string {
	out := maps.Clone(a)
	if out == nil {
		out = map[string]string{}
	}
	out["idopipe.dev/config-hash"] = hash
	return out
}

// toUnstructured converts a typed object, leaving out the empty fields
// the conversion adds (creationTimestamp: null, status: {}).
func toUnstructured(o runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, err
	}
	delete(m, "status")
	unstructured.RemoveNestedField(m, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(m, "spec", "template", "metadata", "creationTimestamp")
	if claims, ok, _ := unstructured.NestedSlice(m, "spec", "volumeClaimTemplates"); ok {
		for _, cl := range claims {
			unstructured.RemoveNestedField(cl.(map[string]any), "metadata", "creationTimestamp")
			delete(cl.(map[string]any), "status")
		}
		_ = unstructured.SetNestedSlice(m, claims, "spec", "volumeClaimTemplates")
	}
	unstructured.RemoveNestedField(m, "spec", "strategy")
	unstructured.RemoveNestedField(m, "spec", "updateStrategy")
	return &unstructured.Unstructured{Object: m}, nil
}

// YAML is objs as one multi-document YAML stream, as kubectl apply -f reads it.
func YAML(objs []manifest.Object) ([]byte, error) {
	var b bytes.Buffer
	for i, o := range objs {
		if i > 0 {
			b.WriteString("---\n")
		}
		y, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, err
		}
		b.Write(y)
	}
	return b.Bytes(), nil
}

// configHash identifies the builder's configuration: when it changes, the
// Pods' template changes and they restart with it.
func configHash(toml string, cas map[string][]byte) string {
	h := sha256.New()
	h.Write([]byte(toml))
	for _, host := range slices.Sorted(maps.Keys(cas)) {
		h.Write([]byte("\x00" + host + "\x00"))
		h.Write(cas[host])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
