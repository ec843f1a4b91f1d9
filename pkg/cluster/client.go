package cluster

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/idopipe/idopipe/pkg/fail"
)

// FieldManager is the name idopipe's server-side applies are recorded under.
const FieldManager = "idopipe"

// Client talks to one cluster.
type Client struct {
	Core    kubernetes.Interface
	Dynamic dynamic.Interface
	Mapper  meta.ResettableRESTMapper
	Host    string

	// ConfigUser is the kubeconfig's user name for this context (who a
	// revision was made by when the API server does not say).
	ConfigUser string
	// LockTiming: how the release lock is held (zero: DefaultLockTiming).
	LockTiming LockTiming

	// leases is the client the release lock renews its Lease with: unlike
	// Core, it keeps working after the lock is lost. nil: Core.
	leases    kubernetes.Interface
	lockGuard *guard
	guardOnce sync.Once
}

// New connects with kubectl's flags (--kubeconfig, --context, ...) and checks
// that the API server answers.
func New(ctx context.Context, flags genericclioptions.RESTClientGetter) (*Client, error) {
	cfg, err := flags.ToRESTConfig()
	if err != nil {
		return nil, fail.Wrap(fail.Cluster, err, "check --kubeconfig, $KUBECONFIG and --context", "cannot load the kubeconfig")
	}
	// A release sends a few requests per object, at most parallel at once:
	// that bounds the load, and the API server's priority and fairness
	// throttles; a client-side token bucket would only add waits
	// (a negative QPS turns it off).
	cfg.QPS = -1
	leases, err := kubernetes.NewForConfig(rest.CopyConfig(cfg))
	if err != nil {
		return nil, fail.Wrap(fail.Cluster, err, "check the kubeconfig", "cannot configure the Kubernetes client")
	}
	g := &guard{}
	// Every request but the lock's own stops once the lock is lost.
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return guarded{next: rt, g: g} })
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fail.Wrap(fail.Cluster, err, "check the kubeconfig", "cannot configure the Kubernetes client")
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fail.Wrap(fail.Cluster, err, "check the kubeconfig", "cannot configure the Kubernetes client")
	}
	c := &Client{Core: core, Dynamic: dyn, Host: cfg.Host, leases: leases, lockGuard: g, ConfigUser: configUser(flags)}
	if err := c.Ping(ctx); err != nil {
		return nil, err
	}
	// Discovery is read afresh for each run and kept in memory only: a
	// release must see the kinds the API server serves now (a CRD removed
	// an hour ago), not kubectl's disk cache of them, which lives for hours.
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fail.Wrap(fail.Cluster, err, "", "cannot read the API server's discovery data")
	}
	c.Mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	return c, nil
}

// configUser is the kubeconfig's user name of the context in use.
func configUser(flags genericclioptions.RESTClientGetter) string {
	loader := flags.ToRawKubeConfigLoader()
	raw, err := loader.RawConfig()
	if err != nil {
		return ""
	}
	name := raw.CurrentContext
	if cf, ok := flags.(*genericclioptions.ConfigFlags); ok {
		if cf.AuthInfoName != nil && *cf.AuthInfoName != "" {
			return *cf.AuthInfoName
		}
		if cf.Context != nil && *cf.Context != "" {
			name = *cf.Context
		}
	}
	if kc := raw.Contexts[name]; kc != nil {
		return kc.AuthInfo
	}
	return ""
}

func (c *Client) leaseClient() kubernetes.Interface {
	if c.leases != nil {
		return c.leases
	}
	return c.Core
}

// Ping checks that the API server answers within 10 seconds.
func (c *Client) Ping(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Core.Discovery().ServerVersion()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fail.Wrap(fail.Cluster, err, "check that the cluster is up and --kubeconfig/--context select it", "cannot reach the API server at %s", c.Host)
		}
		return nil
	case <-time.After(10 * time.Second):
		return fail.New(fail.Cluster, "check that the cluster is up and --kubeconfig/--context select it", "the API server at %s did not answer in 10s", c.Host)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Namespaced tells whether the cluster serves gvk as a namespaced kind.
func (c *Client) Namespaced(gvk schema.GroupVersionKind) (bool, error) {
	m, err := c.mapping(gvk)
	if err != nil {
		return false, err
	}
	return m.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

func (c *Client) mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := c.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		// The discovery cache may predate a CRD applied in this run.
		c.Mapper.Reset()
		m, err = c.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		if meta.IsNoMatchError(err) {
			return nil, fail.WithCause(fail.Manifest, err, "apply its CustomResourceDefinition first (--crds FILE), or fix apiVersion/kind",
				"the cluster does not serve kind %s in %s", gvk.Kind, gvk.GroupVersion())
		}
		return nil, fail.Wrap(fail.Cluster, err, "", "cannot look up kind %s", gvk)
	}
	return m, nil
}

func isCanceled(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, context.Canceled)
}
