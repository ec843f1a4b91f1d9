package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
)

// TestReleaseBadInput: each bad input fails with one line naming the cause
// and the fix, the class's exit code, and leaves the cluster untouched (its
// namespace is never created). Inputs that exist before the build are
// rejected before any build work.
func TestReleaseBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	malformed := write("malformed.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n  data: [\n")
	noKind := write("nokind.yaml", "apiVersion: v1\nmetadata: {name: x}\n")
	wrongToken := write("wrong-token", "ghp_wrong\n")
	emptyToken := write("empty-token", "\n")
	unknownKind := write("unknown.yaml", "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\n")
	otherNS := write("otherns.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: elsewhere}\n")
	dupPod := write("dup1.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: planner}\nspec: {containers: [{name: c, image: planner}]}\n")
	dupPod2 := write("dup2.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: planner}\nspec: {containers: [{name: c, image: planner}]}\n")
	badPort := write("badport.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 99999}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: planner}\nspec: {containers: [{name: c, image: planner}]}\n")
	spacedToken := write("spaced-token", stack.Registry.Password+" \n")
	badImage := write("badimage.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: planner}\nspec: {containers: [{name: c, image: 'UPPER/Case:'}]}\n")
	huge := write("huge.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata: {k: \""+strings.Repeat("x", 9<<20)+"\"}\n")
	latin1 := write("latin1.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: caf\xe9}\n")
	boolName := write("boolname.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: no}\n")
	genName := write("genname.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: planner-}\n")
	badDockerfile := write("Dockerfile.bad", "FROM golang:1.24.6 AS build\nNOTANINSTRUCTION foo\n")
	terminating, opaqueNS := "bad-terminating", "bad-opaque-secret"
	prepareNamespaces(t, terminating, opaqueNS)
	// The namespace controller empties a Terminating namespace (a finalizer
	// keeps only the namespace itself).
	prepared := map[string]int{terminating: 0, opaqueNS: 1}
	noPlanner := write("noplanner.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: mongo:6}]}\n")
	badKubeconfig := write("kubeconfig", `apiVersion: v1
kind: Config
clusters: [{name: down, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: down, context: {cluster: down, user: u}}]
users: [{name: u, user: {}}]
current-context: down
`)

	cases := []badCase{
		{name: "token with trailing whitespace", env: []string{"GITHUB_TOKEN=" + stack.Registry.Password + " "}, class: fail.Credentials,
			want: []string{"$GITHUB_TOKEN holds whitespace"}, preBuild: true},
		{name: "token file with a trailing space", args: []string{"--token-file", spacedToken}, class: fail.Credentials,
			want: []string{spacedToken + " holds whitespace"}, preBuild: true},
		{name: "token file is a directory", args: []string{"--token-file", dir}, class: fail.Credentials,
			want: []string{dir + " is a directory"}, preBuild: true},
		{name: "invalid image reference in the manifest", args: []string{"--manifest", badImage}, class: fail.Manifest,
			want: []string{`invalid image "UPPER/Case:"`}, preBuild: true, remote: true},
		{name: "wrong kube context", args: []string{"--context", "no-such-context"}, class: fail.Cluster,
			want: []string{"no-such-context", "--context"}, preBuild: true, remote: true},
		{name: "oversized manifest", args: []string{"--manifest", huge}, class: fail.Manifest,
			want: []string{"larger than 8 MiB"}, preBuild: true},
		{name: "non-UTF-8 manifest", args: []string{"--manifest", latin1}, class: fail.Manifest,
			want: []string{"is not valid UTF-8"}, preBuild: true},
		{name: "name YAML reads as a boolean", args: []string{"--manifest", boolName}, class: fail.Manifest,
			want: []string{"metadata.name that is not a string", "quote it"}, preBuild: true},
		{name: "generateName", args: []string{"--manifest", genName}, class: fail.Manifest,
			want: []string{"uses generateName"}, preBuild: true},
		{name: "--crds file holding a Pod", args: []string{"--crds", noPlanner}, class: fail.Manifest,
			want: []string{"--crds file", "holds a Pod"}, preBuild: true, drop: []string{"--crds"}},
		{name: "unknown output format", args: []string{"-o", "yaml"}, class: fail.Usage,
			want: []string{"this command has no yaml output", "--output human or --output json"}, preBuild: true},
		{name: "invalid version", args: []string{"--version", "0.4/0"}, class: fail.Usage,
			want: []string{`--version "0.4/0" is not a valid image tag`}, preBuild: true},
		{name: "missing registry CA file", args: []string{"--registry-ca", filepath.Join(dir, "no-ca.pem")}, class: fail.Usage,
			want: []string{"cannot read registry CA", "--registry-ca"}, preBuild: true},
		{name: "Dockerfile syntax error", args: []string{"--file", badDockerfile}, class: fail.Build,
			want: []string{badDockerfile + ":2"}},
		{name: "unknown platform", args: []string{"--platform", "linux/nonsense-arch"}, class: fail.Usage,
			want: []string{"linux/nonsense-arch"}, preBuild: true},
		{name: "namespace terminating", ns: terminating, class: fail.Cluster,
			want: []string{"namespace " + terminating + " is being deleted", "-n"}, preBuild: true, remote: true},
		{name: "Secret of another type named ghcr-secret", ns: opaqueNS, class: fail.Cluster,
			want: []string{"Secret " + opaqueNS + "/ghcr-secret exists with type Opaque", "--secret-name"}, preBuild: true, remote: true},
		{name: "no token", env: []string{"GITHUB_TOKEN="}, class: fail.Credentials,
			want: []string{"no registry token found", "GITHUB_TOKEN"}, preBuild: true},
		{name: "empty token file", args: []string{"--token-file", emptyToken}, class: fail.Credentials,
			want: []string{emptyToken, "is empty"}, preBuild: true},
		{name: "missing token file", args: []string{"--token-file", filepath.Join(dir, "nope")}, class: fail.Credentials,
			want: []string{"does not exist", "--token-file"}, preBuild: true},
		{name: "wrong token", args: []string{"--token-file", wrongToken}, class: fail.Credentials,
			want: []string{`403 "denied"`, "refused the credentials (the token from --token-file " + wrongToken, "at its token endpoint", "revoked"}},
		{name: "no username", env: []string{"GITHUB_ACTOR="}, class: fail.Credentials,
			want: []string{"no registry username", "--username"}, preBuild: true},
		{name: "BuildKit unreachable", args: []string{"--buildkit-host", "unix://" + filepath.Join(dir, "no.sock")}, class: fail.Daemon,
			want: []string{"cannot reach BuildKit", "--buildkit-host"}},
		{name: "registry unreachable", args: []string{"--registry", "127.0.0.1:1"}, class: fail.Registry,
			want: []string{"cannot connect to registry 127.0.0.1:1"}},
		{name: "registry host does not resolve", args: []string{"--registry", "registry.idopipe.invalid"}, class: fail.Registry,
			want: []string{"cannot resolve registry host registry.idopipe.invalid: "}, preBuild: true, remote: true},
		{name: "registry CA unknown", args: []string{"--registry-ca", ""}, class: fail.Registry,
			want: []string{"unknown authority", "--registry-ca"}},
		{name: "API server unreachable", args: []string{"--kubeconfig", badKubeconfig}, class: fail.Cluster,
			want: []string{"cannot reach the API server at https://127.0.0.1:1", "--kubeconfig"}, preBuild: true, remote: true},
		{name: "missing Dockerfile", args: []string{"--file", filepath.Join(dir, "Dockerfile.nope")}, class: fail.Build,
			want: []string{"Dockerfile " + filepath.Join(dir, "Dockerfile.nope") + " does not exist", "--file"}, preBuild: true},
		{name: "missing build context", args: []string{"--source", filepath.Join(dir, "nosrc")}, class: fail.Build,
			want: []string{"build context", "is not a directory", "--source"}, preBuild: true},
		{name: "malformed manifest", args: []string{"--manifest", malformed}, class: fail.Manifest,
			want: []string{malformed + "#1 is not valid YAML"}, preBuild: true},
		{name: "document without kind", args: []string{"--manifest", noKind}, class: fail.Manifest,
			want: []string{noKind + "#1 has no kind"}, preBuild: true},
		{name: "kind the cluster does not serve", args: []string{"--manifest", unknownKind}, class: fail.Manifest,
			want: []string{"does not serve kind Gadget", "--crds"}, preBuild: true, remote: true},
		{name: "missing manifest", args: []string{"--manifest", filepath.Join(dir, "absent.yaml")}, class: fail.Manifest,
			want: []string{"cannot read manifest", "--manifest"}, preBuild: true},
		{name: "owner with a space", args: []string{"--owner", "bad owner"}, class: fail.Usage,
			want: []string{"not a valid registry owner", "--owner"}, preBuild: true},
		// Names the registry or the API server would refuse only after the
		// build and push: refused at validate, with the rule and an example.
		{name: "version with build metadata", args: []string{"--version", "0.4.0+build1"}, class: fail.Usage,
			want: []string{`--version "0.4.0+build1" is not a valid image tag`, "use a tag such as 0.4.0-build1"}, preBuild: true},
		{name: "namespace that is no DNS label", args: []string{"-n", "Bad_NS"}, class: fail.Usage,
			want: []string{`-n "Bad_NS" is not a valid namespace name`, "e.g. ido"}, preBuild: true},
		{name: "Secret name that is no DNS subdomain", args: []string{"--secret-name", "Bad_Secret"}, class: fail.Usage,
			want: []string{`--secret-name "Bad_Secret" is not a valid Secret name`, "e.g. ghcr-secret"}, preBuild: true},
		{name: "GHCR owner no GitHub account can have", args: []string{"--registry", "ghcr.io", "--owner", "My_Org"}, class: fail.Usage,
			want: []string{`--owner "My_Org" is no GitHub user or organisation name`, "e.g. my-org"}, preBuild: true},
		{name: "extra tag that is no tag", args: []string{"--tag", "v1+x"}, class: fail.Usage,
			want: []string{`--tag "v1+x" is not a valid image tag`}, preBuild: true},
		{name: "object in another namespace", args: []string{"--manifest", otherNS}, class: fail.Manifest,
			want: []string{`sets namespace "elsewhere"`, "-n elsewhere"}, preBuild: true, remote: true},
		{name: "manifest does not run the image", args: []string{"--manifest", noPlanner}, class: fail.Manifest,
			want: []string{`no container in the manifest runs an image named "planner"`}, preBuild: true, remote: true},
		{name: "duplicate object across manifests", args: []string{"--manifest", dupPod, "--manifest", dupPod2}, class: fail.Manifest,
			want: []string{dupPod2 + "#1 declares Pod/planner again (first at " + dupPod + "#1)"}, preBuild: true},
		// The server's validation of namespaced objects needs the namespace,
		// which a release creates after its push: the image is pushed, the
		// cluster is left untouched.
		{name: "object the API server rejects", args: []string{"--manifest", badPort}, class: fail.Manifest, pushes: true,
			want: []string{"the API server rejected Service/", "/s: spec.ports[0].port: Invalid value: 99999", "fix " + badPort + "#1"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runBadCase(t, i, tc, prepared)
		})
	}
}

// TestReleaseWithoutCRD: a custom resource whose CRD the cluster lacks is
// refused before the build, naming --crds. Serial: it removes the IDO CRDs,
// which the parallel tests' releases apply (and apply again after it).
func TestReleaseWithoutCRD(t *testing.T) {
	intent := filepath.Join(t.TempDir(), "intent.yaml")
	if err := os.WriteFile(intent, []byte("apiVersion: ido.intel.com/v1alpha1\nkind: Intent\nmetadata: {name: i}\nspec: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	removeCRD(t, "intents.ido.intel.com")
	runBadCase(t, 0, badCase{name: "custom resource without its CRD", args: []string{"--manifest", intent}, class: fail.Manifest,
		want: []string{intent + "#1: the cluster does not serve kind Intent", "--crds"}, preBuild: true, remote: true, drop: []string{"--crds"}}, nil)
}

// badCase is one bad input of a release and what it must give.
type badCase struct {
	name     string
	env      []string
	args     []string
	class    fail.Class
	want     []string // substrings of the one-line error
	preBuild bool     // must fail before the build stage starts
	drop     []string // flags of the default release to leave out
	ns       string   // an existing namespace prepared for the case
	pushes   bool     // fails after the push (the registry holds the image)
	remote   bool     // found by the checks that run alongside the build: before the push
}

// runBadCase runs tc's release (case i: its namespace and owner are its
// own) and checks the error line, the exit code, where it stopped, and
// that nothing was left: no namespace (prepared ones keep only their
// prepared objects) and no pushed image.
func runBadCase(t *testing.T, i int, tc badCase, prepared map[string]int) {
	ctx := context.Background()
	ns := "bad-" + strings.ToLower(strings.Trim(strings.Fields(tc.name)[0], "-")) + "-" + itoa(i)
	if tc.ns != "" {
		ns = tc.ns
	}
	owner := "bad" + itoa(i)
	if prepared == nil {
		owner = "bad-nocrd"
	}
	args := releaseArgs(ns, append([]string{"--owner", owner}, tc.args...)...)
	drop := tc.drop
	if slices.Contains(tc.args, "--manifest") { // replace the fixture manifest
		drop = append(drop, "--manifest")
	}
	args = slices.Clone(args)
	for _, f := range drop {
		i := slices.Index(args, f)
		args = slices.Delete(args, i, i+2)
	}
	r := idopipe(t, tc.env, args...)
	if r.code != int(tc.class) {
		t.Fatalf("exit %d, want %d (%s)\n%s", r.code, tc.class, tc.class, r)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "error: ") {
		t.Fatalf("last stderr line is not the error: %q", last)
	}
	for _, w := range tc.want {
		if !strings.Contains(last, w) {
			t.Errorf("error %q does not mention %q", last, w)
		}
	}
	switch {
	case tc.remote && strings.Contains(r.stdout, "==> push"):
		t.Errorf("a failed registry or cluster check did not stop the release before the push:\n%s", r.stdout)
	case tc.preBuild && !tc.remote && strings.Contains(r.stdout, "==> build"):
		t.Errorf("bad input found only after the build started:\n%s", r.stdout)
	}
	// A namespace the release made is deleted again.
	if tc.ns == "" {
		if n, err := stack.Cluster.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) && (err != nil || n.DeletionTimestamp == nil) {
			t.Errorf("namespace %s exists after a failed release (err %v)", ns, err)
		}
	} else if objs, want := namespaceObjects(t, ns), prepared[ns]; objs != want {
		t.Errorf("namespace %s holds %d objects after the failed release, want only the %d prepared", ns, objs, want)
	}
	// Nothing was pushed for a release that failed before its push.
	if tag, _ := name.NewTag(stack.Registry.Host + "/" + owner + "/planner:0.4.0"); tc.class != fail.Build && !tc.pushes {
		c := creds.Credentials{Username: stack.Registry.Username, Token: creds.NewSecret(stack.Registry.Password)}
		opts, _ := registry.Access{Creds: &c, CAFile: stack.Registry.CAFile}.Options(ctx)
		if _, err := remote.Head(tag, opts...); err == nil {
			t.Errorf("%s was pushed by a release that failed", tag)
		}
	}
}

// prepareNamespaces makes a namespace stuck Terminating (a finalizer that
// nothing but deleteNamespace removes) and one holding an Opaque Secret
// named ghcr-secret.
func prepareNamespaces(t *testing.T, terminating, opaque string) {
	t.Helper()
	ctx := context.Background()
	core := stack.Cluster.Client.CoreV1()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: terminating, Finalizers: []string{testFinalizer}},
		Spec: corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{"kubernetes"}}}
	if _, err := core.Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.ConfigMaps(terminating).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "prepared"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := core.Namespaces().Delete(ctx, terminating, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opaque}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "ghcr-secret"}, Type: corev1.SecretTypeOpaque, StringData: map[string]string{"k": "v"}}
	if _, err := core.Secrets(opaque).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// namespaceObjects counts ConfigMaps, Secrets, ServiceAccounts, Services
// and Pods in ns, leaving out what the controller-manager puts in every
// namespace (the "default" ServiceAccount, the kube-root-ca.crt ConfigMap).
func namespaceObjects(t *testing.T, ns string) int {
	t.Helper()
	ctx := context.Background()
	core := stack.Cluster.Client.CoreV1()
	n := 0
	if l, err := core.ConfigMaps(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, o := range l.Items {
			if o.Name != "kube-root-ca.crt" {
				n++
			}
		}
	}
	if l, err := core.Secrets(ns).List(ctx, metav1.ListOptions{}); err == nil {
		n += len(l.Items)
	}
	if l, err := core.ServiceAccounts(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, o := range l.Items {
			if o.Name != "default" {
				n++
			}
		}
	}
	if l, err := core.Services(ns).List(ctx, metav1.ListOptions{}); err == nil {
		n += len(l.Items)
	}
	if l, err := core.Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
		n += len(l.Items)
	}
	return n
}

func removeCRD(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	crds := dynamic.NewForConfigOrDie(stack.Cluster.Config).Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	if err := crds.Delete(ctx, name, metav1.DeleteOptions{}); apierrors.IsNotFound(err) {
		return
	} else if err != nil {
		t.Fatal(err)
	}
	// Gone as an object, and from discovery, which idopipe reads and which
	// lags behind the deletion.
	resource, group, _ := strings.Cut(name, ".")
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if _, err := crds.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return false, nil
		}
		_, lists, err := stack.Cluster.Client.Discovery().ServerGroupsAndResources()
		if err != nil {
			return false, nil
		}
		for _, l := range lists {
			gv, _ := schema.ParseGroupVersion(l.GroupVersion)
			for _, r := range l.APIResources {
				if gv.Group == group && r.Name == resource {
					return false, nil
				}
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("CRD %s not gone: %v", name, err)
	}
}
