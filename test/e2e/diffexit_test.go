package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/idopipe/idopipe/pkg/fail"
)

// TestDiffExitStatusAndDeployRegistryCA, on the real stack:
// diff is a drift check (0 nothing to change, 1 differences, above 1 an
// error), and deploy's --registry-ca is refused when it cannot be read and
// used when it can: it is the trust of the tag's resolution and of
// --verify-key's signature check.
func TestDiffExitStatusAndDeployRegistryCA(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ns = "cmd13"
	r := idopipe(t, nil, releaseArgs(ns, "-o", "json")...)
	if r.code != 0 {
		t.Fatalf("release:\n%s", r)
	}
	ref := parseRelease(t, r).Result.Ref
	tag, _, _ := strings.Cut(ref, "@")
	manifest := manifestFor(ns)
	crds := filepath.Join(fixtures, "intents_crds_v1alpha1.yaml")
	diff := func(namespace, manifest string, extra ...string) result {
		return idopipe(t, nil, append([]string{"diff", "--image", ref, "-n", namespace, "--manifest", manifest, "--crds", crds}, extra...)...)
	}

	t.Run("diff exits 0 when nothing would change", func(t *testing.T) {
		d := diff(ns, manifest)
		if d.code != 0 || !strings.Contains(d.stdout, "no differences") || strings.Contains(d.stderr, "error:") {
			t.Fatalf("diff of what was released:\n%s", d)
		}
	})

	t.Run("diff exits 1 on differences", func(t *testing.T) {
		changed := fixtureWith(t, ns, map[string]string{`value: "mongodb://planner-mongodb-service:27017/"`: `value: "mongodb://elsewhere:27017/"`})
		d := diff(ns, changed)
		if d.code != 1 || !strings.Contains(d.stdout, "Pod/"+ns+"/planner: recreate") || !strings.Contains(d.stdout, "difference(s)") ||
			strings.Contains(d.stderr, "error:") {
			t.Fatalf("diff of a changed manifest:\n%s", d)
		}
		j := diff(ns, changed, "-o", "json")
		var res struct {
			OK     bool `json:"ok"`
			Result struct {
				Changes int `json:"changes"`
			} `json:"result"`
		}
		if j.code != 1 || lastJSON(j, &res) != nil || !res.OK || res.Result.Changes < 1 {
			t.Fatalf("diff -o json of a changed manifest:\n%s", j)
		}
		// A namespace that does not exist: everything would be created,
		// and diff creates nothing.
		fresh := ns + "-fresh"
		if d := diff(fresh, manifest); d.code != 1 {
			t.Fatalf("diff into a new namespace:\n%s", d)
		}
		if _, err := stack.Cluster.Client.CoreV1().Namespaces().Get(ctx, fresh, metav1.GetOptions{}); err == nil {
			t.Fatal("diff created the namespace")
		}
	})

	t.Run("diff exits with the class code on an error", func(t *testing.T) {
		d := diff(ns, filepath.Join(t.TempDir(), "absent.yaml"))
		if d.code != int(fail.Manifest) || !strings.Contains(d.stderr, "cannot read manifest") {
			t.Fatalf("diff of a missing manifest:\n%s", d)
		}
	})

	t.Run("deploy refuses a --registry-ca it cannot read", func(t *testing.T) {
		const target = "cmd13-ca"
		d := idopipe(t, nil, "deploy", "--image", ref, "-n", target, "--manifest", manifest, "--crds", crds,
			"--registry-ca", "/nonexistent/ca.pem")
		if d.code != int(fail.Usage) || !strings.Contains(d.stderr, "cannot read registry CA /nonexistent/ca.pem") || !strings.Contains(d.stderr, "--registry-ca") {
			t.Fatalf("deploy --registry-ca /nonexistent:\n%s", d)
		}
		if _, err := stack.Cluster.Client.CoreV1().Namespaces().Get(ctx, target, metav1.GetOptions{}); err == nil {
			t.Fatal("deploy with an unreadable --registry-ca created the namespace")
		}
	})

	t.Run("deploy uses --registry-ca for the tag and the signature check", func(t *testing.T) {
		const target = "cmd13-ca-used"
		_, pub := keyPair(t)
		deploy := func(ca string) result {
			return idopipe(t, nil, "deploy", "--image", tag, "-n", target, "--manifest", manifest, "--crds", crds,
				"--verify-key", pub, "--registry-ca", ca, "--jobs", "1", "--timeout", "60s")
		}
		// Another registry's CA: the stack's registry is not trusted.
		if d := deploy(stack.Mirror.CAFile); d.code != int(fail.Registry) || !strings.Contains(d.stderr, "unknown authority") {
			t.Fatalf("deploy --registry-ca of another registry:\n%s", d)
		}
		// The registry's CA: the tag resolves, and the image is unsigned.
		if d := deploy(stack.Registry.CAFile); d.code != int(fail.Unsigned) {
			t.Fatalf("deploy --registry-ca of the registry, unsigned image:\n%s", d)
		}
		if _, err := stack.Cluster.Client.CoreV1().Namespaces().Get(ctx, target, metav1.GetOptions{}); err == nil {
			t.Fatal("a deploy refused before the cluster created the namespace")
		}
	})
}
