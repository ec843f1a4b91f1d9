package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/manifest"
)

// dockerConfig is the .dockerconfigjson layout, field for field what
// `kubectl create secret docker-registry` writes.
type dockerConfig struct {
	Auths map[string]dockerConfigEntry `json:"auths"`
}

type dockerConfigEntry struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Email    string `json:"email,omitempty"`
	Auth     string `json:"auth,omitempty"`
}

// DockerConfigJSON returns the .dockerconfigjson bytes for one registry.
// Every part must be valid UTF-8: JSON would replace invalid bytes, and the
// entry would no longer match the registry or the token.
func DockerConfigJSON(registry string, c creds.Credentials) ([]byte, error) {
	tok := c.Token.Reveal()
	if !utf8.ValidString(registry) || !utf8.ValidString(c.Username) || !utf8.ValidString(tok) {
		return nil, fail.New(fail.Credentials, "use a registry host, username and token of valid UTF-8 text", "cannot write a pull Secret for registry %q: not valid UTF-8", strings.ToValidUTF8(registry, "?"))
	}
	return json.Marshal(dockerConfig{Auths: map[string]dockerConfigEntry{registry: {
		Username: c.Username,
		Password: tok,
		Auth:     base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + tok)),
	}}})
}

// PullSecret is the image-pull Secret of a release.
type PullSecret struct {
	Namespace, Name, Registry string
	Creds                     creds.Credentials
}

// Object is the Secret as a manifest object without data, to name it in
// the inventory and in prune decisions.
func (p PullSecret) Object() manifest.Object {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("v1")
	u.SetKind("Secret")
	u.SetNamespace(p.Namespace)
	u.SetName(p.Name)
	return manifest.Object{Unstructured: u, Source: "--secret-name"}
}

// applyConfig returns the Secret as an apply configuration; nothing in it
// but the data carries the token.
func (p PullSecret) applyConfig() (*corev1ac.SecretApplyConfiguration, error) {
	data, err := DockerConfigJSON(p.Registry, p.Creds)
	if err != nil {
		return nil, fail.Wrap(fail.Internal, err, "", "cannot encode pull Secret")
	}
	return corev1ac.Secret(p.Name, p.Namespace).
		WithType(corev1.SecretTypeDockerConfigJson).
		WithLabels(map[string]string{"app.kubernetes.io/managed-by": FieldManager}).
		WithData(map[string][]byte{corev1.DockerConfigJsonKey: data}), nil
}

// ApplySecret creates or updates the pull Secret by server-side apply (so no
// last-applied-configuration annotation copies the token). A Secret of
// another type under that name is an error: type is immutable.
func (c *Client) ApplySecret(ctx context.Context, p PullSecret, dryRun bool) (Status, error) {
	before := ""
	live, err := c.Core.CoreV1().Secrets(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return "", c.explain(ctx, err, "read Secret "+p.Namespace+"/"+p.Name)
	case live.Type != corev1.SecretTypeDockerConfigJson:
		return "", fail.New(fail.Cluster, "delete it (kubectl delete secret "+p.Name+" -n "+p.Namespace+") or pass --secret-name",
			"Secret %s/%s exists with type %s, not %s", p.Namespace, p.Name, live.Type, corev1.SecretTypeDockerConfigJson)
	default:
		before = live.ResourceVersion
	}
	ac, err := p.applyConfig()
	if err != nil {
		return "", err
	}
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	got, err := c.Core.CoreV1().Secrets(p.Namespace).Apply(ctx, ac, opts)
	if err != nil {
		return "", c.explain(ctx, err, "apply Secret "+p.Namespace+"/"+p.Name)
	}
	return statusOf(before, got.ResourceVersion, dryRun), nil
}

// PullCredentials reads the pull Secret ns/name as a kubelet would and
// returns the credentials it holds for registryHost.
func (c *Client) PullCredentials(ctx context.Context, ns, name, registryHost string) (creds.Credentials, error) {
	s, err := c.Core.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return creds.Credentials{}, fail.WithCause(fail.Credentials, err, "create it with `idopipe deploy` or `idopipe release`",
			"the cluster has no pull Secret %s/%s", ns, name)
	}
	if err != nil {
		return creds.Credentials{}, c.explain(ctx, err, "read Secret "+ns+"/"+name)
	}
	source := "Secret " + ns + "/" + name
	if s.Type != corev1.SecretTypeDockerConfigJson {
		return creds.Credentials{}, fail.New(fail.Credentials, "recreate it with type "+string(corev1.SecretTypeDockerConfigJson),
			"%s has type %s, which the kubelet does not read for image pulls", source, s.Type)
	}
	var cfg dockerConfig
	if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
		return creds.Credentials{}, fail.WithCause(fail.Credentials, err, "recreate it", "%s holds no valid %s", source, corev1.DockerConfigJsonKey)
	}
	e, ok := cfg.Auths[registryHost]
	if !ok {
		e, ok = cfg.Auths["https://"+registryHost]
	}
	if !ok {
		return creds.Credentials{}, fail.New(fail.Credentials, "recreate it for registry "+registryHost,
			"%s has no entry for registry %s", source, registryHost)
	}
	user, pass := e.Username, e.Password
	if e.Auth != "" {
		b, err := base64.StdEncoding.DecodeString(e.Auth)
		u, p, found := strings.Cut(string(b), ":")
		if err != nil || !found {
			return creds.Credentials{}, fail.WithCause(fail.Credentials, err, "recreate it", "%s has a malformed auth entry for %s", source, registryHost)
		}
		user, pass = u, p
	}
	if pass == "" {
		return creds.Credentials{}, fail.New(fail.Credentials, "recreate it with the token", "%s has no password for %s", source, registryHost)
	}
	return creds.Credentials{Username: user, Token: creds.NewSecret(pass), Source: source}, nil
}

// SecretAction tells what applying the pull Secret would do, without
// showing its data: create, update (other credentials) or unchanged.
func (c *Client) SecretAction(ctx context.Context, p PullSecret) (Action, error) {
	live, err := c.Core.CoreV1().Secrets(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Create, nil
	}
	if err != nil {
		return "", c.explain(ctx, err, "read Secret "+p.Namespace+"/"+p.Name)
	}
	data, err := DockerConfigJSON(p.Registry, p.Creds)
	if err != nil {
		return "", fail.Wrap(fail.Internal, err, "", "cannot encode pull Secret")
	}
	if live.Type == corev1.SecretTypeDockerConfigJson && string(live.Data[corev1.DockerConfigJsonKey]) == string(data) {
		return NoChange, nil
	}
	return Update, nil
}

// CheckTarget finds, before any build work, what would stop the cluster
// stages: the namespace being deleted, or a Secret of another type under
// the pull Secret's name.
func (c *Client) CheckTarget(ctx context.Context, ns, secret string) error {
	n, err := c.Core.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return c.explain(ctx, err, "read namespace "+ns)
	case n.Status.Phase == corev1.NamespaceTerminating || n.DeletionTimestamp != nil:
		return fail.New(fail.Cluster, "wait until it is gone, or release into another namespace with -n", "namespace %s is being deleted", ns)
	}
	s, err := c.Core.CoreV1().Secrets(ns).Get(ctx, secret, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return c.explain(ctx, err, "read Secret "+ns+"/"+secret)
	case s.Type != corev1.SecretTypeDockerConfigJson:
		return fail.New(fail.Cluster, "delete it (kubectl delete secret "+secret+" -n "+ns+") or pass --secret-name",
			"Secret %s/%s exists with type %s, not %s", ns, secret, s.Type, corev1.SecretTypeDockerConfigJson)
	}
	return nil
}
