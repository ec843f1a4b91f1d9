package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/registry"
)

// upstreamPlugins are IDO 0.4.0's actuator plugins as testdata/ido-checkout
// lays them out: the image each plugin's manifest runs, and its Pod.
var upstreamPlugins = []struct{ image, pod string }{
	{"cpuscale", "cpu-scale-actuator"},
	{"energy", "energy-actuator"},
	{"rdt", "rdt-actuator"},
	{"rmpod", "rmpod-actuator"},
	{"scaleout", "scaleout-actuator"},
}

// exampleWith is the `with:` of the idopipe/idopipe step of a workflow.
func exampleWith(t *testing.T, workflow []byte, where string) map[string]string {
	t.Helper()
	var wf struct {
		Jobs map[string]struct {
			Steps []struct {
				Uses string            `yaml:"uses"`
				With map[string]string `yaml:"with"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal(workflow, &wf); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	for _, j := range wf.Jobs {
		for _, s := range j.Steps {
			if strings.HasPrefix(s.Uses, "idopipe/idopipe@") {
				return s.With
			}
		}
	}
	t.Fatalf("%s has no step that uses idopipe/idopipe", where)
	return nil
}

// docWorkflow is the workflow of docs/github-action.md: its first yaml
// code block.
func docWorkflow(t *testing.T, root string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docs", "github-action.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/github-action.md has no yaml code block")
	}
	return []byte(block)
}

// copyTree copies the files of src into dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// upstreamCheckout fills dir as actions/checkout would a fork of IDO 0.4.0:
// the planner's Dockerfile at the root (the planner fixture), its manifest
// (the fixture copy for ns) and CRDs under artefacts/, and the five plugins
// of testdata/ido-checkout, each plugins/<dir>/Dockerfile with its
// *-plugin.yaml beside it.
func upstreamCheckout(t *testing.T, dir, ns string) {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	copyTree(t, filepath.Join(root, "testdata", "ido-checkout"), dir)
	copyTree(t, source, dir)
	for to, from := range map[string]string{
		"artefacts/deploy/manifest.yaml":       manifestFor(ns),
		"artefacts/intents_crds_v1alpha1.yaml": filepath.Join(fixtures, "intents_crds_v1alpha1.yaml"),
	} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, to)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, to), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestActionExampleUpstreamLayout runs the inputs of the example workflow
// (docs/examples/ido-release.yml, the same as docs/github-action.md's)
// through the action on a workspace laid out like upstream IDO 0.4.0: the
// planner and the five actuator plugins are built, pushed and deployed,
// and each plugin's container runs its pushed image, by digest, in a Pod
// Running on the node (pulled with the Secret on the planner's
// ServiceAccount, which the plugins' Pods run under). Only what points at GHCR and the repository's
// secret is replaced by the stack's. `idopipe init --plugins` on the same
// checkout finds the plugins the example lists.
func TestActionExampleUpstreamLayout(t *testing.T) {
	t.Parallel()
	const ns = "action-plugins"
	cleanupNamespace(t, ns)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join(root, "docs", "examples", "ido-release.yml"))
	if err != nil {
		t.Fatal(err)
	}
	with := exampleWith(t, example, "docs/examples/ido-release.yml")
	doc := exampleWith(t, docWorkflow(t, root), "docs/github-action.md")
	for k, v := range with {
		if doc[k] != v {
			t.Errorf("docs/github-action.md's %s is %q, the example's %q", k, doc[k], v)
		}
	}

	in := map[string]string{}
	for k, v := range with {
		if !strings.Contains(v, "${{") { // the secret: set below
			in[k] = v
		}
	}
	for _, k := range []string{"extra-images", "manifests", "crds", "image-name"} {
		if in[k] == "" {
			t.Fatalf("the example sets no %s", k)
		}
	}
	fake := startFakeGitHub(t)
	bin, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	fake.release(t, "idopipe/idopipe", "v0.9.0", bin, "")
	kubeconfig, err := os.ReadFile(stack.Cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	// The stack in place of GHCR and the KUBECONFIG secret; the stack's
	// buildkitd (TestActionRelease covers the action's own).
	in["kubeconfig"] = string(kubeconfig)
	in["registry"] = stack.Registry.Host
	in["registry-ca"] = stack.Registry.CAFile
	in["owner"] = ownerOf(ns)
	in["namespace"] = ns
	in["releases-url"] = fake.URL
	in["buildkit-host"] = stack.BuildKit.Address
	in["args"] = "--build-context\ngolang:1.24.6=oci-layout://" + busybox + "\n--timeout\n120s"

	var workspace string
	a := runActionIn(t, githubContext(fake, "v0.9.0"), in, func(dir string) {
		workspace = dir
		upstreamCheckout(t, dir, ns)
	})
	if a.failed != "" {
		t.Fatalf("the example's release failed at step %s:\n%s", a.failed, a)
	}
	assertTokenOnlyMasked(t, a)
	t.Logf("pods-ready %s, planner %s", a.actionOutputs["pods-ready"], a.actionOutputs["ref"])
	if want := fmt.Sprintf("%d/%d", 2+len(upstreamPlugins), 2+len(upstreamPlugins)); a.actionOutputs["pods-ready"] != want {
		t.Errorf("pods-ready %q, want %s (the planner's two Pods and one per plugin)", a.actionOutputs["pods-ready"], want)
	}

	// Each plugin: pushed under its name, and its Deployment's Pod runs
	// that image by digest on the node.
	ctx := context.Background()
	c := creds.Credentials{Username: stack.Registry.Username, Token: creds.NewSecret(stack.Registry.Password)}
	opts, err := registry.Access{Creds: &c, CAFile: stack.Registry.CAFile}.Options(ctx)
	if err != nil {
		t.Fatal(err)
	}
	owner := strings.ToLower(ownerOf(ns))
	for _, p := range upstreamPlugins {
		tag := stack.Registry.Host + "/" + owner + "/" + p.image + ":v1.2.3"
		ref, err := name.ParseReference(tag)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Get(ref, opts...)
		if err != nil {
			t.Errorf("plugin %s was not pushed: %v", p.image, err)
			continue
		}
		digest := desc.Digest.String()
		pod, err := stack.Cluster.Client.CoreV1().Pods(ns).Get(ctx, p.pod, metav1.GetOptions{})
		if err != nil {
			t.Errorf("plugin %s: %v", p.image, err)
			continue
		}
		if img := pod.Spec.Containers[0].Image; img != tag+"@"+digest {
			t.Errorf("plugin %s: Pod %s runs %q, not the pushed %s@%s", p.image, pod.Name, img, tag, digest)
		}
		if pod.Status.Phase != "Running" || pod.Spec.NodeName != testenv.NodeName {
			t.Errorf("plugin %s: Pod %s is %s on node %q", p.image, pod.Name, pod.Status.Phase, pod.Spec.NodeName)
		}
		if len(pod.Status.ContainerStatuses) != 1 || !strings.HasSuffix(pod.Status.ContainerStatuses[0].ImageID, "@"+digest) || !pod.Status.ContainerStatuses[0].Ready {
			t.Errorf("plugin %s: the kubelet runs %+v, not %s", p.image, pod.Status.ContainerStatuses, digest)
		}
	}

	// init on the same checkout lists the plugins the example names.
	out := filepath.Join(t.TempDir(), "idopipe.yaml")
	r := idopipe(t, nil, "init", "--source", workspace, "--out", out, "--plugins", "-o", "json")
	var res struct {
		Result struct{ Plugins []string } `json:"result"`
	}
	if r.code != 0 || json.Unmarshal([]byte(lastLine(r.stdout)), &res) != nil {
		t.Fatalf("init --plugins:\n%s", r)
	}
	var named []string
	for _, l := range strings.Split(strings.TrimSpace(in["extra-images"]), "\n") {
		for _, kv := range strings.Split(l, ",") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(kv), "name="); ok {
				named = append(named, v)
			}
		}
	}
	if !slices.Equal(res.Result.Plugins, named) {
		t.Errorf("init finds plugins %q, the example names %q", res.Result.Plugins, named)
	}
}
