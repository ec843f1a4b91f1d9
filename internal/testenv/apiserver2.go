package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// SecondAPIServer is another kube-apiserver of the cluster: the first's
// binary and flags (etcd, certificates, admission, authorization,
// service-account issuer) on a loopback port of its own, with an admin
// kubeconfig that names only it. A test kills it mid-request and starts it
// again, as a client sees its only API server crash, while the first keeps
// serving the node, the controllers and every other test.
type SecondAPIServer struct {
	Kubeconfig string // admin kubeconfig whose server is this one
	Host       string // 127.0.0.1:PORT

	bin, dir string
	args     []string
	proc     *process
	client   kubernetes.Interface
}

// secondAPIServers numbers the second API servers of a test binary (their
// logs).
var secondAPIServers atomic.Int64

// StartSecondAPIServer starts a second API server, writing its kubeconfig
// under dir, and waits until it is ready.
func (c *Cluster) StartSecondAPIServer(ctx context.Context, dir string) (*SecondAPIServer, error) {
	api := c.env.ControlPlane.GetAPIServer()
	// The first by its port: a second one shares its cert-dir.
	pids := processesMatching(func(cmdline []string) bool {
		return strings.HasSuffix(cmdline[0], "kube-apiserver") && slices.Contains(cmdline, "--cert-dir="+api.CertDir) &&
			slices.Contains(cmdline, "--secure-port="+api.SecureServing.Port)
	})
	if len(pids) != 1 {
		return nil, fmt.Errorf("testenv: want the cluster's one kube-apiserver, found %d processes", len(pids))
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pids[0]), "cmdline"))
	if err != nil {
		return nil, err
	}
	first := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &SecondAPIServer{Host: "127.0.0.1:" + strconv.Itoa(port), bin: first[0], dir: dir}
	// The same flags but the port; the lease endpoint reconciler off: the
	// first publishes the kubernetes Service's endpoints, and two servers
	// on one IP would overwrite each other's port there.
	for _, a := range first[1:] {
		switch {
		case strings.HasPrefix(a, "--secure-port="):
			a = "--secure-port=" + strconv.Itoa(port)
		case strings.HasPrefix(a, "--endpoint-reconciler-type="):
			continue
		}
		s.args = append(s.args, a)
	}
	s.args = append(s.args, "--endpoint-reconciler-type=none")
	kc, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	for _, cl := range kc.Clusters {
		cl.Server = "https://" + s.Host
	}
	s.Kubeconfig = filepath.Join(dir, "kubeconfig-second-apiserver")
	if err := clientcmd.WriteToFile(*kc, s.Kubeconfig); err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		return nil, err
	}
	if s.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// Start starts the server (again, after Kill: same port and flags) and
// waits until /readyz answers: CRDs, RBAC and discovery loaded.
func (s *SecondAPIServer) Start(ctx context.Context) error {
	if s.proc != nil && !s.proc.exited() {
		return errors.New("testenv: the second API server is running")
	}
	// Its log goes beside the kubeconfig; its --cert-dir names the stack's
	// directory, so the node reaper finds it if the test binary dies.
	p, err := startProcess(s.dir, fmt.Sprintf("kube-apiserver-second-%d", secondAPIServers.Add(1)), s.bin, s.args, nil)
	if err != nil {
		return err
	}
	s.proc = p
	return p.waitFor(ctx, 2*time.Minute, func(ctx context.Context) error {
		_, err := s.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	})
}

// Kill ends the server with SIGKILL, as a crash would, and reaps it.
func (s *SecondAPIServer) Kill() {
	if s.proc == nil || s.proc.exited() {
		return
	}
	_ = syscall.Kill(-s.proc.cmd.Process.Pid, syscall.SIGKILL)
	<-s.proc.done
}

// Stop ends the server (SIGTERM, then SIGKILL).
func (s *SecondAPIServer) Stop() {
	if s != nil {
		s.proc.stop(10 * time.Second)
	}
}
