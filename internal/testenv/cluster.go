package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// Cluster is a one-node Kubernetes cluster: etcd and kube-apiserver
// (envtest) with the default admission plugins, kube-controller-manager,
// kube-scheduler and, when asked, a real kubelet node (see Node).
type Cluster struct {
	Kubeconfig string       // admin kubeconfig file
	Config     *rest.Config // the same, for in-process clients
	Client     kubernetes.Interface
	Node       *Node // nil for a control plane without nodes

	env         *envtest.Environment
	scheduler   *process
	controllers *process
	apiStopped  bool // by StopAPIServer, until StartAPIServer
}

type clusterClient = kubernetes.Interface

func startCluster(ctx context.Context, tools, dir string, node *nodeConfig) (c *Cluster, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// envtest logs through controller-runtime, whose logger is never set in
	// a test: it would print a stack trace instead (after 30 s, as when the
	// stack waited for the node lock).
	ctrllog.SetLogger(logr.Discard())
	c = &Cluster{}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	c.env = &envtest.Environment{BinaryAssetsDirectory: tools, ControlPlaneStartTimeout: time.Minute}
	// etcd's data in the stack's directory too: every process of the stack
	// names it, so the node reaper can find them all.
	c.env.ControlPlane.Etcd = &envtest.Etcd{DataDir: filepath.Join(dir, "etcd")}
	api := c.env.ControlPlane.GetAPIServer()
	// Certificates in a directory of ours: envtest keeps them (and its port)
	// across StopAPIServer/StartAPIServer, so kubeconfigs stay valid.
	api.CertDir = filepath.Join(dir, "apiserver")
	if err := os.MkdirAll(api.CertDir, 0o700); err != nil {
		return nil, err
	}
	// The default admission plugins of a real cluster, ServiceAccount
	// included (envtest switches it off), plus NodeRestriction as kubeadm
	// enables it. Nothing is switched off: the controller-manager makes the
	// ServiceAccounts and tokens that plugin needs, and the node lifecycle
	// controller clears a new node's not-ready taint.
	api.Configure().Disable("disable-admission-plugins")
	api.Configure().Set("enable-admission-plugins", "NodeRestriction")
	api.Configure().Set("authorization-mode", "Node,RBAC")
	// logs, exec and port-forward reach the kubelet on the stack's bridge.
	api.Configure().Set("kubelet-preferred-address-types", "InternalIP")
	// Privileged containers, as most clusters allow them (a BuildKit
	// builder in the cluster runs privileged).
	api.Configure().Set("allow-privileged", "true")
	// Stop at once when told (StopAPIServer), as a crashed server would.
	api.Configure().Set("shutdown-delay-duration", "0s")
	if c.Config, err = c.env.Start(); err != nil {
		return nil, fmt.Errorf("start kube-apiserver and etcd: %w", err)
	}
	user, err := c.env.AddUser(envtest.User{Name: "idopipe-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}
	c.Config = user.Config()
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	c.scheduler, err = startProcess(dir, "kube-scheduler", filepath.Join(tools, "kube-scheduler"),
		[]string{"--kubeconfig", c.Kubeconfig, "--leader-elect=false", "--secure-port=0"}, nil)
	if err != nil {
		return nil, err
	}
	// The controllers a one-node cluster's workloads need: ServiceAccounts
	// and their tokens, the root CA ConfigMap, namespace deletion, garbage
	// collection, the workload kinds, node lifecycle (taints), and the
	// binding of claims to PersistentVolumes made beforehand (no
	// provisioner) with the protection controllers that release their
	// finalizers.
	c.controllers, err = startProcess(dir, "kube-controller-manager", filepath.Join(tools, "kube-controller-manager"), []string{
		"--kubeconfig", c.Kubeconfig, "--leader-elect=false", "--secure-port=0",
		"--service-account-private-key-file", filepath.Join(api.CertDir, "sa-signer.key"),
		"--root-ca-file", filepath.Join(api.CertDir, "apiserver.crt"),
		"--use-service-account-credentials=false",
		"--controllers", "serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller," +
			"namespace-controller,garbage-collector-controller,clusterrole-aggregation-controller," +
			"deployment-controller,replicaset-controller,statefulset-controller,daemonset-controller,job-controller," +
			"cronjob-controller,endpointslice-controller,disruption-controller,ttl-after-finished-controller," +
			"node-lifecycle-controller,taint-eviction-controller,pod-garbage-collector-controller," +
			"persistentvolume-binder-controller,persistentvolume-protection-controller,persistentvolumeclaim-protection-controller",
		"--concurrent-gc-syncs", "4", "--namespace-sync-period", "10s",
	}, nil)
	if err != nil {
		return nil, err
	}
	if err := c.waitDefaultServiceAccount(ctx); err != nil {
		return nil, err
	}
	if node != nil {
		node.env, node.client = c.env, c.Client
		if c.Node, err = startNode(ctx, *node); err != nil {
			return nil, fmt.Errorf("start the node: %w", err)
		}
	}
	return c, nil
}

// waitDefaultServiceAccount waits until the controller-manager serves:
// namespace "default" has its ServiceAccount.
func (c *Cluster) waitDefaultServiceAccount(ctx context.Context) error {
	return c.controllers.waitFor(ctx, time.Minute, func(ctx context.Context) error {
		_, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// StopAPIServer kills kube-apiserver (SIGKILL, as a crash would), leaving
// etcd, the controllers and the node running: a cluster whose API server went
// away mid-release. StartAPIServer brings it back.
func (c *Cluster) StopAPIServer() error {
	api := c.env.ControlPlane.GetAPIServer()
	pids := processesMatching(func(cmdline []string) bool { return slices.Contains(cmdline, "--cert-dir="+api.CertDir) })
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	c.apiStopped = true
	return api.Stop() // reaps the process and resets envtest's state
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, on the same
// port with the same certificates, and waits until the cluster works as it
// did before the stop: the server ready (/readyz: CRDs, RBAC and discovery
// loaded), the node's kubelet renewing its lease again, and the
// controller-manager acting on new objects (a new namespace gets its
// ServiceAccount, and its deletion completes). Without a StopAPIServer before
// it, it does nothing, so a test can register it as a cleanup.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	if !c.apiStopped {
		return nil
	}
	if err := c.env.ControlPlane.GetAPIServer().Start(); err != nil {
		return err
	}
	c.apiStopped = false
	restarted := metav1.NowMicro()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := poll(ctx, func(ctx context.Context) error {
		_, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	}); err != nil {
		return fmt.Errorf("kube-apiserver not ready after a restart: %w", err)
	}
	if c.Node != nil {
		if err := poll(ctx, func(ctx context.Context) error {
			l, err := c.Client.CoordinationV1().Leases("kube-node-lease").Get(ctx, NodeName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if l.Spec.RenewTime == nil || l.Spec.RenewTime.Before(&restarted) {
				return errors.New("the kubelet has not renewed its lease since the restart")
			}
			return nil
		}); err != nil {
			return fmt.Errorf("node %s after the API server's restart: %w", NodeName, err)
		}
	}
	if err := c.probeControllers(ctx); err != nil {
		return fmt.Errorf("kube-controller-manager after the API server's restart: %w", err)
	}
	return nil
}

// probeControllers creates a namespace, waits for the controller-manager to
// give it its ServiceAccount, deletes it and waits until the namespace
// controller has removed it.
func (c *Cluster) probeControllers(ctx context.Context) error {
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "testenv-probe-"}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if err := poll(ctx, func(ctx context.Context) error {
		_, err := c.Client.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
		return fmt.Errorf("namespace %s has no default ServiceAccount: %w", ns.Name, err)
	}
	if err := c.Client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
		return err
	}
	return poll(ctx, func(ctx context.Context) error {
		_, err := c.Client.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err == nil {
			return fmt.Errorf("namespace %s not deleted yet", ns.Name)
		}
		return err
	})
}

// poll calls check every 100 ms until it succeeds or ctx ends, and then
// returns check's last error.
func poll(ctx context.Context, check func(context.Context) error) error {
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop ends the node (removing what it changed on the host), the
// controllers, the scheduler, the API server and etcd.
func (c *Cluster) Stop() {
	if c == nil {
		return
	}
	var client clusterClient
	if c.Client != nil {
		client = c.Client
	}
	c.Node.stop(client)
	c.Node = nil
	c.controllers.stop(5 * time.Second)
	c.scheduler.stop(5 * time.Second)
	if c.env != nil {
		_ = c.env.Stop()
	}
}
