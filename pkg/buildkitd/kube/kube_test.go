package kube

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
)

func deployment(t *testing.T, objs []manifest.Object) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs[1].Object, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

// TestObjectsDefault: a privileged Deployment of the pinned image,
// buildkitd on its default socket with the ConfigMap's config, Ready by
// `buildctl debug workers`, state on an emptyDir; the YAML reads back.
func TestObjectsDefault(t *testing.T) {
	objs, err := Objects(Config{Namespace: "ci", Name: "bk", Replicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 || objs[0].GetKind() != "ConfigMap" || objs[1].GetKind() != "Deployment" {
		t.Fatalf("objects: %v", objs)
	}
	d := deployment(t, objs)
	ctr := d.Spec.Template.Spec.Containers[0]
	if ctr.Image != "moby/buildkit:"+BuildKitVersion || ctr.Name != Container || *d.Spec.Replicas != 2 {
		t.Fatalf("container %+v replicas %d", ctr, *d.Spec.Replicas)
	}
	if ctr.SecurityContext == nil || ctr.SecurityContext.Privileged == nil || !*ctr.SecurityContext.Privileged {
		t.Fatalf("not privileged: %+v", ctr.SecurityContext)
	}
	if strings.Join(ctr.Args, " ") != "--config "+configFile {
		t.Fatalf("args %v", ctr.Args)
	}
	if got := strings.Join(ctr.ReadinessProbe.Exec.Command, " "); got != "buildctl debug workers" {
		t.Fatalf("readiness %q", got)
	}
	if d.Spec.Template.Spec.Volumes[1].EmptyDir == nil || ctr.VolumeMounts[1].MountPath != stateDir {
		t.Fatalf("state: %+v %+v", d.Spec.Template.Spec.Volumes, ctr.VolumeMounts)
	}
	if d.Spec.Selector.MatchLabels[LabelInstance] != "bk" || d.Spec.Template.Labels[LabelManagedBy] != "idopipe" {
		t.Fatalf("labels %v %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}
	y, err := YAML(objs)
	if err != nil {
		t.Fatal(err)
	}
	back, err := manifest.Decode("out.yaml", y)
	if err != nil || len(back) != 2 {
		t.Fatalf("decode: %v %d\n%s", err, len(back), y)
	}
	if strings.Contains(string(y), "creationTimestamp") || strings.Contains(string(y), "status:") {
		t.Fatalf("empty fields in the YAML:\n%s", y)
	}
}

// TestObjectsRootlessAndStorage: rootless runs as 1000 with unconfined
// profiles and no process sandbox; --storage makes a StatefulSet with a
// claim per replica.
func TestObjectsRootlessAndStorage(t *testing.T) {
	objs, err := Objects(Config{Namespace: "ci", Name: "bk", Replicas: 1, Rootless: true})
	if err != nil {
		t.Fatal(err)
	}
	ctr := deployment(t, objs).Spec.Template.Spec.Containers[0]
	sc := ctr.SecurityContext
	if ctr.Image != DefaultRootlessImage || sc.Privileged != nil || *sc.RunAsUser != 1000 || sc.SeccompProfile.Type != corev1.SeccompProfileTypeUnconfined ||
		sc.AppArmorProfile.Type != corev1.AppArmorProfileTypeUnconfined || !strings.Contains(strings.Join(ctr.Args, " "), "--oci-worker-no-process-sandbox") ||
		ctr.VolumeMounts[1].MountPath != rootlessStateDir {
		t.Fatalf("rootless container: %+v", ctr)
	}
	objs, err = Objects(Config{Namespace: "ci", Name: "bk", Replicas: 3, Storage: "20Gi", StorageClass: "fast"})
	if err != nil {
		t.Fatal(err)
	}
	var s appsv1.StatefulSet
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs[1].Object, &s); err != nil {
		t.Fatal(err)
	}
	if objs[1].GetKind() != "StatefulSet" || len(s.Spec.VolumeClaimTemplates) != 1 || *s.Spec.VolumeClaimTemplates[0].Spec.StorageClassName != "fast" ||
		s.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String() != "20Gi" || len(s.Spec.Template.Spec.Volumes) != 1 {
		t.Fatalf("statefulset: %+v", s.Spec)
	}
}

// TestRootlessFSGroup: a rootless builder's Pod has fsGroup 1000, so a
// claim's root-owned filesystem is writable by its user (measured on the
// stack's node: without it buildkitd cannot open its buildkitd.lock on a
// local PersistentVolume); a privileged one sets no Pod security context.
func TestRootlessFSGroup(t *testing.T) {
	for _, rootless := range []bool{true, false} {
		objs, err := Objects(Config{Namespace: "ci", Name: "bk", Replicas: 1, Rootless: rootless, Storage: "1Gi"})
		if err != nil {
			t.Fatal(err)
		}
		var s appsv1.StatefulSet
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs[1].Object, &s); err != nil {
			t.Fatal(err)
		}
		psc := s.Spec.Template.Spec.SecurityContext
		if rootless && (psc == nil || psc.FSGroup == nil || *psc.FSGroup != 1000) {
			t.Errorf("rootless Pod security context %+v, want fsGroup 1000", psc)
		}
		if !rootless && psc != nil {
			t.Errorf("privileged Pod security context %+v, want none", psc)
		}
	}
}

// TestConfig: an ephemeral-storage limit caps BuildKit's cache below it;
// a registry CA becomes a [registry] table (TLS, even on 127.0.0.1, where
// BuildKit would speak plain HTTP) and a ConfigMap key; a changed
// config changes the Pod template (the Pods roll).
func TestConfig(t *testing.T) {
	c := Config{Namespace: "ci", Name: "bk", Replicas: 1,
		Limits:      corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("10Gi")},
		RegistryCAs: map[string][]byte{"reg.example:5000": []byte("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")}}
	objs, err := Objects(c)
	if err != nil {
		t.Fatal(err)
	}
	toml := objs[0].Object["data"].(map[string]any)["buildkitd.toml"].(string)
	if !strings.Contains(toml, `maxUsedSpace = "8192MB"`) || !strings.Contains(toml, `[registry."reg.example:5000"]`) ||
		!strings.Contains(toml, `ca = ["/etc/buildkit/ca-reg.example-5000.pem"]`) || !strings.Contains(toml, "http = false") {
		t.Fatalf("toml:\n%s", toml)
	}
	if _, ok := objs[0].Object["data"].(map[string]any)["ca-reg.example-5000.pem"]; !ok {
		t.Fatalf("no CA in the ConfigMap: %v", objs[0].Object["data"])
	}
	h1 := deployment(t, objs).Spec.Template.Annotations["idopipe.dev/config-hash"]
	c.RegistryCAs = nil
	objs2, _ := Objects(c)
	if h2 := deployment(t, objs2).Spec.Template.Annotations["idopipe.dev/config-hash"]; h1 == h2 || h1 == "" {
		t.Fatalf("config hash did not change: %s %s", h1, h2)
	}
}

// TestValidate: each bad value is a usage error naming it.
func TestValidate(t *testing.T) {
	ok := Config{Namespace: "ci", Name: "bk", Replicas: 1}
	for name, tc := range map[string]struct {
		mod  func(*Config)
		want string
	}{
		"name":     {func(c *Config) { c.Name = "Bad_Name" }, "not a valid object name"},
		"replicas": {func(c *Config) { c.Replicas = 0 }, "--replicas 0"},
		"selector": {func(c *Config) { c.NodeSelector = map[string]string{"a b": "x"} }, "node selector key"},
		"request": {func(c *Config) {
			c.Requests = corev1.ResourceList{"memory": resource.MustParse("2Gi")}
			c.Limits = corev1.ResourceList{"memory": resource.MustParse("1Gi")}
		}, "exceeds its limit"},
		"storage": {func(c *Config) { c.Storage = "lots" }, "--storage"},
		"class":   {func(c *Config) { c.StorageClass = "fast" }, "--storage-class needs --storage"},
		"toml":    {func(c *Config) { c.ConfigTOML = "[worker.oci\n" }, "does not parse"},
		"ca":      {func(c *Config) { c.RegistryCAs = map[string][]byte{"r:1": []byte("nope")} }, "not a PEM"},
		"ca-twice": {func(c *Config) {
			c.ConfigTOML = "[registry.\"r:1\"]\nhttp = true\n"
			c.RegistryCAs = map[string][]byte{"r:1": []byte("-----BEGIN CERTIFICATE-----")}
		}, "has a [registry] table"},
		"gc-config": {func(c *Config) {
			c.ConfigTOML = "debug = true\n"
			c.Limits = corev1.ResourceList{"ephemeral-storage": resource.MustParse("1Gi")}
		}, "maxUsedSpace"},
	} {
		c := ok
		tc.mod(&c)
		err := c.Validate()
		if err == nil || fail.ClassOf(err) != fail.Usage || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestChoose: a key always goes to the same replica; removing a replica
// moves only the keys that were on it, and spreads keys over replicas.
func TestChoose(t *testing.T) {
	pods := []string{"bk-a", "bk-b", "bk-c"}
	on := map[string]string{}
	count := map[string]int{}
	for i := range 300 {
		k := fmt.Sprintf("planner\x00ctx-%d", i)
		on[k] = Choose(pods, k)
		count[on[k]]++
		if Choose(pods, k) != on[k] {
			t.Fatalf("key %q not sticky", k)
		}
	}
	for _, p := range pods {
		if count[p] < 50 {
			t.Fatalf("uneven spread: %v", count)
		}
	}
	left := []string{"bk-a", "bk-c"}
	for k, p := range on {
		if got := Choose(left, k); p != "bk-b" && got != p {
			t.Fatalf("key %q moved from %s to %s though %s stayed", k, p, got, p)
		}
	}
}

func TestParseAddress(t *testing.T) {
	ns, name, err := ParseAddress("kube://ci/bk")
	if err != nil || ns != "ci" || name != "bk" {
		t.Fatalf("%q %q %v", ns, name, err)
	}
	for _, bad := range []string{"kube://ci", "kube:///bk", "kube://ci/", "kube://ci/bk/x", "tcp://ci/bk"} {
		if _, _, err := ParseAddress(bad); err == nil || fail.ClassOf(err) != fail.Usage {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// TestConnEnds: when the exec stream ends, a blocked Read and later
// Writes return at once with the reason (no hang when the Pod dies).
func TestConnEnds(t *testing.T) {
	c := newConn("bk-a", "ci")
	read := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		read <- err
	}()
	c.stderr.Write([]byte("first\nerror: connection refused\n"))
	c.ended(errors.New("command terminated with exit code 137"))
	select {
	case err := <-read:
		if err == nil || !strings.Contains(err.Error(), "ci/bk-a ended: command terminated with exit code 137") || !strings.Contains(err.Error(), "buildctl said: error: connection refused") {
			t.Fatalf("read: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked after the stream ended")
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("Write after the end succeeded")
	}
	if _, err := io.ReadAll(c); err == nil {
		t.Fatal("no error after the end")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestBuildKitVersion: the default image is the BuildKit idopipe is built
// with (go.mod's requirement).
func TestBuildKitVersion(t *testing.T) {
	b, err := os.ReadFile("../../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/moby/buildkit (v\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("github.com/moby/buildkit is not in go.mod")
	}
	if string(m[1]) != BuildKitVersion {
		t.Fatalf("BuildKitVersion %s, go.mod has %s", BuildKitVersion, m[1])
	}
}
