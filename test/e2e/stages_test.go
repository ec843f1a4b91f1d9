package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
)

// TestDeployManifestMatchesUpstream: deploy/manifest.yaml is the project's
// own text, and must be exactly what idopipe's transform makes of the
// upstream manifest (namespace ido, image on GHCR, ghcr-secret on the
// ServiceAccount), with scopes from the real API server's discovery.
func TestDeployManifestMatchesUpstream(t *testing.T) {
	t.Parallel()
	upstreamDir := testenv.SkipWithoutUpstream(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ours, err := manifest.ReadFile(filepath.Join(root, "deploy", "manifest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	upstream, err := manifest.ReadFile(filepath.Join(upstreamDir, "manifest-0.4.0.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	kube, err := cluster.New(context.Background(), kubeFlags())
	if err != nil {
		t.Fatal(err)
	}
	got, err := manifest.Transform(upstream, manifest.Options{
		Namespace:  "ido",
		Images:     map[string]string{"planner": "ghcr.io/owner/planner:0.4.0"},
		PullSecret: "ghcr-secret",
		Scoper:     kube,
	})
	if err != nil {
		t.Fatal(err)
	}
	index := func(objs []manifest.Object) map[string]any {
		m := map[string]any{}
		for _, o := range objs {
			m[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = normalize(t, o.Object)
		}
		return m
	}
	want, have := index(ours), index(got)
	for k := range have {
		if _, ok := want[k]; !ok {
			t.Errorf("transform yields %s, deploy/manifest.yaml lacks it", k)
		}
	}
	for k, w := range want {
		h, ok := have[k]
		if !ok {
			t.Errorf("deploy/manifest.yaml has %s, the transform does not", k)
			continue
		}
		if !reflect.DeepEqual(w, h) {
			wj, _ := json.MarshalIndent(w, "", " ")
			hj, _ := json.MarshalIndent(h, "", " ")
			t.Errorf("%s differs:\ndeploy/manifest.yaml: %s\ntransform: %s", k, wj, hj)
		}
	}
}

// normalize makes JSON values comparable: numbers as JSON numbers, and
// ConfigMap data that holds JSON compared as JSON, not as text.
func normalize(t *testing.T, obj map[string]any) any {
	t.Helper()
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if data, ok := v["data"].(map[string]any); ok && v["kind"] == "ConfigMap" {
		for k, s := range data {
			var parsed any
			if str, ok := s.(string); ok && json.Unmarshal([]byte(str), &parsed) == nil {
				data[k] = parsed
			}
		}
	}
	return v
}

func kubeFlags() *genericclioptions.ConfigFlags {
	f := genericclioptions.NewConfigFlags(false)
	kc := stack.Cluster.Kubeconfig
	f.KubeConfig = &kc
	return f
}

// TestStagesOneByOne runs each stage as its own command, as a release
// engineer debugging a release would: build, push, verify-pull, deploy (of
// the project's own deploy/manifest.yaml).
func TestStagesOneByOne(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "oci")
	b := idopipe(t, nil, "build", "--source", source, "--build-context", "golang:1.24.6=oci-layout://"+busybox,
		"--oci-layout", layout, "--version", "0.4.1", "--progress", "plain", "-o", "json")
	if b.code != 0 {
		t.Fatalf("build:\n%s", b)
	}
	var built struct {
		Result struct{ Digest, Layout, Ref string } `json:"result"`
	}
	lines := strings.Split(strings.TrimSpace(b.stdout), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &built); err != nil || !strings.HasPrefix(built.Result.Digest, "sha256:") {
		t.Fatalf("build result %q: %v", lines[len(lines)-1], err)
	}

	p := idopipe(t, nil, "push", "--oci-layout", layout, "--version", "0.4.1",
		"--registry", stack.Registry.Host, "--registry-ca", stack.Registry.CAFile, "--owner", "stages")
	ref := stack.Registry.Host + "/stages/planner:0.4.1@" + built.Result.Digest
	if p.code != 0 || !strings.Contains(p.stdout, "pushed "+ref) {
		t.Fatalf("push did not print %s:\n%s", ref, p)
	}

	tag := stack.Registry.Host + "/stages/planner:0.4.1"
	ca := []string{"--registry-ca", stack.Registry.CAFile}
	verifyCases := []struct {
		name  string
		env   []string
		args  []string
		class fail.Class
		want  string
	}{
		{"pullable with the pushed digest", nil, []string{tag, "--digest", built.Result.Digest}, 0, "pullable"},
		{"pullable by digest reference", nil, []string{ref}, 0, "private: anonymous pulls are refused, so the cluster needs the pull Secret"},
		{"digest mismatch", nil, []string{tag, "--digest", "sha256:" + strings.Repeat("0", 64)}, fail.Verify, "not the expected sha256:000"},
		{"tag not found", nil, []string{stack.Registry.Host + "/stages/planner:9.9.9"}, fail.NotFound, "not found"},
		{"anonymous pull of a private image", []string{"GITHUB_TOKEN=", "GITHUB_ACTOR="}, []string{tag}, fail.Credentials, "rejected anonymous"},
		{"bad reference", nil, []string{"Not/A:Ref:x"}, fail.Usage, "invalid image reference"},
	}
	for _, tc := range verifyCases {
		t.Run("verify-pull "+tc.name, func(t *testing.T) {
			r := idopipe(t, tc.env, append(append([]string{"verify-pull"}, tc.args...), ca...)...)
			if r.code != int(tc.class) || !strings.Contains(r.stdout+r.stderr, tc.want) {
				t.Fatalf("want exit %d and %q:\n%s", tc.class, tc.want, r)
			}
		})
	}

	deploy := func(ns string) result {
		return idopipe(t, nil, "deploy", "--image", ref, "-n", ns,
			"--manifest", filepath.Join(root, "deploy", "manifest.yaml"),
			"--crds", filepath.Join(fixtures, "intents_crds_v1alpha1.yaml"), "--timeout", "60s")
	}
	// deploy/manifest.yaml names namespace ido: deploying it elsewhere is
	// refused rather than silently moved.
	if d := deploy("ido-stages"); d.code != int(fail.Manifest) || !strings.Contains(d.stderr, `sets namespace "ido" but the release targets "ido-stages"`) {
		t.Fatalf("deploy into another namespace:\n%s", d)
	}
	if d := deploy("ido"); d.code != 0 || !strings.Contains(d.stdout, "2/2 Pods Ready") {
		t.Fatalf("deploy:\n%s", d)
	}
	pod, err := stack.Cluster.Client.CoreV1().Pods("ido").Get(context.Background(), "planner", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := pod.Spec.Containers[0].Image; img != ref {
		t.Errorf("planner image %s, want %s", img, ref)
	}
	deleteNamespace(t, "ido") // its Pods request 1.5 CPUs: gone before the parallel tests
}
