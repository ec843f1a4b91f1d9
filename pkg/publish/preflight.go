package publish

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/idopipe/idopipe/pkg/registry"
)

// PreflightTimeout bounds the preflight: a token that may not push is
// found in seconds, before any build work (a refusal is not retried); the
// bound leaves room for the retries of a rate limit (1s, 3s, 9s).
const PreflightTimeout = 30 * time.Second

// Preflight proves that access may push to repo: it exchanges the
// credentials for a push-scoped token and starts a blob upload, which it then
// cancels. Registries (GHCR among them) accept a login whose token lacks
// write:packages; only an upload tells.
func Preflight(ctx context.Context, repo name.Repository, access registry.Access) error {
	ctx, cancel := context.WithTimeout(ctx, PreflightTimeout)
	defer cancel()
	base, err := access.RetryTransport() // GitHub's secondary rate limit is retried here too
	if err != nil {
		return err
	}
	auth := authn.Anonymous
	if access.Creds != nil {
		auth = access.Creds.Authenticator()
	}
	tag := repo.Tag("preflight")
	explain := func(err error) error { return access.Explain(err, "push", tag) }
	tr, err := transport.NewWithContext(ctx, repo.Registry, auth, base, []string{repo.Scope(transport.PushScope)})
	if err != nil {
		return explain(err)
	}
	client := &http.Client{Transport: tr}
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/uploads/", repo.Registry.Scheme(), repo.RegistryStr(), repo.RepositoryStr())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return explain(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return explain(err)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusAccepted); err != nil {
		return explain(err)
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		// Cancel the upload so that it holds nothing on the registry.
		if l, err := resp.Request.URL.Parse(loc); err == nil {
			if del, err := http.NewRequestWithContext(ctx, http.MethodDelete, l.String(), nil); err == nil {
				if r, err := client.Do(del); err == nil {
					_, _ = io.Copy(io.Discard, r.Body)
					r.Body.Close()
				}
			}
		}
	}
	return nil
}
