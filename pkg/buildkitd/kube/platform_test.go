package kube

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/fail"
)

// TestPlatformMembers: a builder with platforms is one Deployment and
// ConfigMap per platform, NAME-OS-ARCH[-VARIANT], each on its platform's
// nodes (or the override), its buildkitd serving that platform alone,
// labelled with the builder and platform so a build can find it.
func TestPlatformMembers(t *testing.T) {
	c := Config{Namespace: "ci", Name: "bk", Replicas: 1, NodeSelector: map[string]string{"pool": "builders"},
		Platforms:             []string{"linux/amd64", "linux/arm64", "linux/arm/v7"},
		PlatformNodeSelectors: map[string]map[string]string{"linux/arm/v7": {"example.com/arm": "v7"}}}
	objs, err := Objects(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 6 {
		t.Fatalf("%d objects", len(objs))
	}
	want := []struct {
		name, platform string
		sel            map[string]string
	}{
		{"bk-linux-amd64", "linux/amd64", map[string]string{"pool": "builders", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
		{"bk-linux-arm64", "linux/arm64", map[string]string{"pool": "builders", "kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64"}},
		{"bk-linux-arm-v7", "linux/arm/v7", map[string]string{"pool": "builders", "example.com/arm": "v7"}},
	}
	for i, w := range want {
		cm, d := objs[2*i], deployment(t, objs[2*i:])
		if cm.GetName() != w.name+"-config" || d.Name != w.name {
			t.Fatalf("member %d: %s, %s", i, cm.GetName(), d.Name)
		}
		if d.Spec.Selector.MatchLabels[LabelInstance] != w.name || len(d.Spec.Selector.MatchLabels) != 2 {
			t.Errorf("%s selects %v", w.name, d.Spec.Selector.MatchLabels)
		}
		pl := d.Spec.Template.Labels
		if pl[LabelSet] != "bk" || pl[LabelPlatform] != strings.ReplaceAll(w.platform, "/", "-") || d.Spec.Template.Annotations[AnnotationPlatform] != w.platform {
			t.Errorf("%s Pod labels %v annotations %v", w.name, pl, d.Spec.Template.Annotations)
		}
		if cm.GetLabels()[LabelSet] != "bk" || d.Annotations[AnnotationPlatform] != w.platform {
			t.Errorf("%s: ConfigMap labels %v, Deployment annotations %v", w.name, cm.GetLabels(), d.Annotations)
		}
		if got := d.Spec.Template.Spec.NodeSelector; !equalMaps(got, w.sel) {
			t.Errorf("%s node selector %v, want %v", w.name, got, w.sel)
		}
		if args := strings.Join(d.Spec.Template.Spec.Containers[0].Args, " "); !strings.HasSuffix(args, "--oci-worker-platform="+w.platform) {
			t.Errorf("%s args %s", w.name, args)
		}
		if d.Spec.Template.Spec.Volumes[0].ConfigMap.Name != w.name+"-config" {
			t.Errorf("%s mounts %s", w.name, d.Spec.Template.Spec.Volumes[0].ConfigMap.Name)
		}
	}
	// Without platforms: one builder, no platform label (unchanged).
	objs, err = Objects(Config{Namespace: "ci", Name: "bk", Replicas: 1})
	if err != nil || len(objs) != 2 {
		t.Fatal(err, len(objs))
	}
	if d := deployment(t, objs); d.Spec.Template.Labels[LabelSet] != "" || d.Annotations != nil || len(d.Spec.Template.Annotations) != 1 {
		t.Errorf("a plain builder has platform labels: %v %v", d.Spec.Template.Labels, d.Spec.Template.Annotations)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestPlatformValidate: a duplicate, a platform not in normal form, a
// selector for a platform not built, a bad selector and a name too long
// with its platform are refused in one line, exit 2.
func TestPlatformValidate(t *testing.T) {
	base := Config{Namespace: "ci", Name: "bk", Replicas: 1}
	for _, tc := range []struct {
		c    func(Config) Config
		want string
	}{
		{func(c Config) Config { c.Platforms = []string{"linux/arm64", "linux/arm64"}; return c }, "platform linux/arm64 is given twice"},
		{func(c Config) Config { c.Platforms = []string{"linux/arm64/v8"}; return c }, "not in normal form"},
		{func(c Config) Config { c.Platforms = []string{"arm64"}; return c }, "not OS/ARCH"},
		{func(c Config) Config {
			c.Platforms = []string{"linux/amd64"}
			c.PlatformNodeSelectors = map[string]map[string]string{"linux/arm64": {"a": "b"}}
			return c
		}, "a node selector is given for platform linux/arm64, which the builder does not build"},
		{func(c Config) Config {
			c.Platforms = []string{"linux/amd64"}
			c.PlatformNodeSelectors = map[string]map[string]string{"linux/amd64": {"a": "b c"}}
			return c
		}, `node selector a="b c"`},
		{func(c Config) Config {
			c.Name = strings.Repeat("b", 45)
			c.Platforms = []string{"linux/arm64"}
			return c
		}, "more than 52"},
	} {
		_, err := Objects(tc.c(base))
		if fail.ClassOf(err) != fail.Usage || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("want %q (exit 2), got %v", tc.want, err)
		}
	}
}

func pod(name, member, platform string, deleting bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ci",
		Labels:      map[string]string{LabelName: nameValue, LabelInstance: member, LabelSet: "bk", LabelPlatform: platformLabel(platform)},
		Annotations: map[string]string{AnnotationPlatform: platform}}}
	if deleting {
		now := metav1.Now()
		p.DeletionTimestamp = &now
		p.Finalizers = []string{"x"}
	}
	return p
}

// TestForPlatforms: the dialer finds each platform's builder from the
// Pods' labels, in the order asked; a platform without one (or only a
// terminating Pod) and a build that names none are errors naming the
// fix; a name without per-platform builders is one builder (nil).
func TestForPlatforms(t *testing.T) {
	ctx := context.Background()
	objs := []runtime.Object{
		pod("bk-linux-amd64-1", "bk-linux-amd64", "linux/amd64", false),
		pod("bk-linux-arm64-1", "bk-linux-arm64", "linux/arm64", false),
		pod("bk-linux-s390x-1", "bk-linux-s390x", "linux/s390x", true),
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain-1", Namespace: "ci", Labels: Selector("plain")}},
	}
	core := fake.NewSimpleClientset(objs...)
	d := &Dialer{Config: &rest.Config{}, Core: core, Namespace: "ci", Name: "bk"}
	got, err := d.ForPlatforms(ctx, []string{"linux/arm64", "linux/amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "bk-linux-arm64" || got[0].Platform != "linux/arm64" || got[1].Name != "bk-linux-amd64" || got[1].String() != "kube://ci/bk-linux-amd64" {
		t.Fatalf("routes %+v %+v", got[0], got[1])
	}
	_, err = d.ForPlatforms(ctx, []string{"linux/amd64", "linux/s390x"})
	if fail.ClassOf(err) != fail.Usage || !strings.Contains(err.Error(), "builder kube://ci/bk has no builder for platform linux/s390x (it builds linux/amd64, linux/arm64)") ||
		!strings.Contains(err.Error(), "--platform linux/amd64 --platform linux/arm64 --platform linux/s390x") {
		t.Errorf("missing platform: %v", err)
	}
	_, err = d.ForPlatforms(ctx, nil)
	if fail.ClassOf(err) != fail.Usage || !strings.Contains(err.Error(), "names no platform") {
		t.Errorf("no platform: %v", err)
	}
	ms, err := d.Members(ctx)
	if err != nil || len(ms) != 2 || ms[0].Platform != "linux/amd64" || ms[1].Name != "bk-linux-arm64" {
		t.Errorf("members %v %v", ms, err)
	}
	plain := &Dialer{Config: &rest.Config{}, Core: core, Namespace: "ci", Name: "plain"}
	if got, err := plain.ForPlatforms(ctx, []string{"linux/amd64", "linux/arm64"}); got != nil || err != nil {
		t.Errorf("a plain builder routed: %v %v", got, err)
	}
}

// TestStaleMembers: the builders an earlier create of the name wrote and
// this one does not make: dropped platforms, and the plain builder when
// the name is per platform now; foreign objects are not members.
func TestStaleMembers(t *testing.T) {
	ctx := context.Background()
	member := func(name, platform string) *appsv1.Deployment {
		c := Config{Name: name, set: "bk", platform: platform}
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ci", Labels: c.labels()}}
	}
	foreign := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "bk-linux-386", Namespace: "ci", Labels: map[string]string{LabelSet: "bk"}}}
	kc := &cluster.Client{Core: fake.NewSimpleClientset(member("bk-linux-amd64", "linux/amd64"), member("bk-linux-arm64", "linux/arm64"), foreign)}
	stale, err := staleBuilders(ctx, kc, Config{Namespace: "ci", Name: "bk", Platforms: []string{"linux/amd64"}})
	if err != nil || strings.Join(stale, ",") != "bk-linux-arm64,bk" {
		t.Errorf("per platform: %v %v", stale, err)
	}
	stale, err = staleBuilders(ctx, kc, Config{Namespace: "ci", Name: "bk"})
	if err != nil || strings.Join(stale, ",") != "bk-linux-amd64,bk-linux-arm64" {
		t.Errorf("one builder: %v %v", stale, err)
	}
}
