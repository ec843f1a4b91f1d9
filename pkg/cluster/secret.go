package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/fail"
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
func DockerConfigJSON(registry string, c creds.Credentials) ([]byte, error) {
	tok := c.Token.Reveal()
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
