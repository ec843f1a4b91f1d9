package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
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
	// Certificates in a directory of ours, which a second API server
	// (StartSecondAPIServer) serves with too.
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
	// No client-side rate limit, as idopipe's own client (pkg/cluster):
	// client-go's default, 5 requests a second for all the tests in a
	// package, queued the end-to-end tests' checks and cleanups behind each
	// other (a bad-input case took 1-3 s, 0.2 s of it its own work). Every
	// poll in the tests sleeps between its requests.
	c.Config.QPS = -1
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
