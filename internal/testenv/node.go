package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// The node's fixed names. Some of what a kubelet and containerd use is
// host-wide whatever their flags say (the kubelet's device-plugin directory,
// containerd's shim sockets under /run/containerd, the kubepods cgroups), so
// one node runs per machine at a time (see nodeLock) under one fixed root,
// which also lets a stack find and remove a node left over by a killed run.
const (
	NodeName   = "idopipe-node"
	nodeRoot   = "/var/lib/idopipe-node"
	nodeLock   = "/run/idopipe-node.lock"
	bridgeName = "idopipe0"
	// The pod network: a /24 on the stack's own bridge, routed nowhere off
	// the machine. The kubelet serves on the bridge's address, so the API
	// server's calls to it (logs, exec, port-forward) stay on the bridge.
	podSubnet = "10.244.77.0/24"
	bridgeIP  = "10.244.77.1"
)

// Node is a real kubelet on Debian's containerd, runc and CNI plugins,
// joined to the stack's API server as NodeName and labelled as a
// control-plane node (the IDO Pods require one). Pods on it really pull
// their images (with their pull Secrets) and really run.
type Node struct {
	Name string
	IP   string // the bridge address the kubelet serves on

	containerd *process
	kubelet    *process
	host       *hostChanges
	reaper     *reaper
	client     clusterClient
}

// RegistryTrust is a registry containerd must trust by its CA.
type RegistryTrust struct {
	Host   string // 127.0.0.1:PORT
	CAFile string
}

// nodeConfig is what startNode needs from the rest of the stack.
type nodeConfig struct {
	tools      string
	stackDir   string        // the stack's directory: the reaper kills what names it
	held       *MachineLocks // the caller's, when it holds the node lock
	env        *envtest.Environment
	client     clusterClient
	registries []RegistryTrust
	mirror     RegistryTrust // serves docker.io's images (mongo:6, the sandbox image)
}

// startNode takes the machine's node lock, removes what a killed run left,
// records the host state it will change, and starts containerd and the
// kubelet. Stop undoes all of it.
func startNode(ctx context.Context, cfg nodeConfig) (n *Node, err error) {
	rp, err := startReaper(ctx, cfg.stackDir, cfg.held)
	if err != nil {
		return nil, err
	}
	n = &Node{Name: NodeName, IP: bridgeIP, reaper: rp, client: cfg.client}
	defer func() {
		if err != nil {
			n.stop(cfg.client)
		}
	}()
	if n.host, err = recordHost(); err != nil {
		return n, err
	}
	dirs := map[string]string{}
	for _, d := range []string{"containerd/root", "containerd/state", "certs.d", "cni/net.d", "cni/ipam", "kubelet", "volume-plugins", "runc", "logs"} {
		dirs[d] = filepath.Join(nodeRoot, d)
		if err := os.MkdirAll(dirs[d], 0o755); err != nil {
			return n, err
		}
	}
	if err := n.host.addBridge(); err != nil {
		return n, err
	}
	if err := writeRegistryHosts(dirs["certs.d"], cfg.registries, cfg.mirror); err != nil {
		return n, err
	}
	if err := os.WriteFile(filepath.Join(dirs["cni/net.d"], "10-idopipe.conflist"), []byte(cniConfig(dirs["cni/ipam"])), 0o644); err != nil {
		return n, err
	}
	sock := filepath.Join(nodeRoot, "containerd", "containerd.sock")
	ccfg := filepath.Join(nodeRoot, "containerd", "config.toml")
	if err := os.WriteFile(ccfg, []byte(containerdConfig(dirs, sock, cfg.mirror.Host)), 0o644); err != nil {
		return n, err
	}
	path := "PATH=" + os.Getenv("PATH") + ":/usr/sbin:/sbin:/usr/bin"
	if n.containerd, err = startProcess(dirs["logs"], "containerd", "/usr/bin/containerd", []string{"--config", ccfg}, []string{path}); err != nil {
		return n, fmt.Errorf("%w (install Debian's containerd: make deps)", err)
	}
	err = n.containerd.waitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		return exec.CommandContext(ctx, "/usr/bin/ctr", "--address", sock, "version").Run()
	})
	if err != nil {
		return n, err
	}

	user, err := cfg.env.AddUser(envtest.User{Name: "system:node:" + NodeName, Groups: []string{"system:nodes"}}, nil)
	if err != nil {
		return n, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return n, err
	}
	kubeconfig := filepath.Join(nodeRoot, "kubelet.kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return n, err
	}
	port, err := freePort()
	if err != nil {
		return n, err
	}
	healthz, err := freePort()
	if err != nil {
		return n, err
	}
	resolv := filepath.Join(nodeRoot, "resolv.conf")
	// Pods resolve nothing: no name lookup leaves the machine.
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		return n, err
	}
	kcfg := filepath.Join(nodeRoot, "kubelet.yaml")
	if err := os.WriteFile(kcfg, []byte(kubeletConfig(sock, port, healthz, resolv, dirs["volume-plugins"])), 0o644); err != nil {
		return n, err
	}
	n.kubelet, err = startProcess(dirs["logs"], "kubelet", filepath.Join(cfg.tools, "kubelet"), []string{
		"--config", kcfg, "--kubeconfig", kubeconfig,
		"--hostname-override", NodeName, "--node-ip", bridgeIP,
		"--root-dir", dirs["kubelet"], "--v", "1",
	}, []string{path})
	if err != nil {
		return n, err
	}
	return n, n.kubelet.waitFor(ctx, time.Minute, func(ctx context.Context) error {
		node, err := cfg.client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if _, ok := node.Labels["node-role.kubernetes.io/control-plane"]; !ok {
			// A kubelet may not set node-role labels itself (NodeRestriction).
			patch := []byte(`{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":""}}}`)
			if _, err := cfg.client.CoreV1().Nodes().Patch(ctx, NodeName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				return err
			}
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				for _, t := range node.Spec.Taints {
					if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
						return fmt.Errorf("node Ready but tainted %s", t.Key)
					}
				}
				// Its heartbeat Lease comes later (see PauseKubelet): only
				// the test of a silent kubelet needs it, and waiting here
				// cost every stack ~10 s.
				return nil
			}
		}
		return fmt.Errorf("node %s not Ready yet", NodeName)
	})
}

// Logs is the directory holding containerd's and the kubelet's logs.
func (n *Node) Logs() string { return filepath.Join(nodeRoot, "logs") }

// stop deletes the node's Pods (so the kubelet tears down their containers
// and networks), stops the kubelet and containerd, and removes everything
// they changed on the host. client may be nil (API server gone).
func (n *Node) stop(client clusterClient) {
	if n == nil {
		return
	}
	if client != nil && n.kubelet != nil && !n.kubelet.exited() {
		drain(client)
	}
	n.kubelet.stop(10 * time.Second)
	killNodeProcesses()
	n.containerd.stop(10 * time.Second)
	n.host.undo()
	n.reaper.done()
}

// drain deletes every Pod bound to the node with a one-second grace period
// and waits (bounded) until the kubelet has torn them down.
func drain(client clusterClient) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sel := fields.OneTermEqualSelector("spec.nodeName", NodeName).String()
	grace := int64(1)
	for ctx.Err() == nil {
		pods, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil || len(pods.Items) == 0 {
			return
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				_ = client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// killNodeProcesses kills what outlives containerd and the kubelet: the
// runc shims (their own sessions) and every process in the kubepods
// cgroups (the containers).
func killNodeProcesses() {
	for _, pid := range processesMatching(func(cmdline []string) bool {
		return len(cmdline) > 0 && strings.HasSuffix(cmdline[0], "containerd-shim-runc-v2") && slicesContains(cmdline, nodeRoot)
	}) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for i := 0; i < 20; i++ {
		pids := kubepodsProcesses()
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func slicesContains(args []string, sub string) bool {
	for _, a := range args {
		if strings.Contains(a, sub) {
			return true
		}
	}
	return false
}

func writeRegistryHosts(dir string, registries []RegistryTrust, mirror RegistryTrust) error {
	write := func(name, server, ca string) error {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		// server is the only host: nothing falls back to the internet.
		toml := fmt.Sprintf("server = %q\nca = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n", server, ca, server, ca)
		return os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(toml), 0o644)
	}
	for _, r := range append(registries, mirror) {
		if r.Host == "" {
			continue
		}
		if err := write(r.Host, "https://"+r.Host, r.CAFile); err != nil {
			return err
		}
	}
	if mirror.Host == "" {
		return nil
	}
	// docker.io's images (the manifest's mongo:6) come from the mirror.
	return write("docker.io", "https://"+mirror.Host, mirror.CAFile)
}

// cniConfig is the node's one network: the bridge with host-local IPAM.
// No loopback plugin in the chain: containerd's CRI sets up each Pod's lo
// through a loopback network of its own (go-cni's WithLoNetwork), so a
// second one only ran the plugin twice more per Pod (add and delete).
func cniConfig(ipamDir string) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "idopipe",
  "plugins": [
    {
      "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q, "gateway": %q}]]}
    }
  ]
}
`, bridgeName, ipamDir, podSubnet, bridgeIP)
}

// SandboxImage is the Pods' sandbox ("pause") image, made by the stack and
// served by its docker.io mirror (there is no registry.k8s.io here).
const SandboxImage = "docker.io/idopipe/pause:1"

func containerdConfig(dirs map[string]string, sock, mirror string) string {
	return fmt.Sprintf(`version = 2
root = %q
state = %q
oom_score = 0

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # The VM lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = %q
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, dirs["containerd/root"], dirs["containerd/state"], sock, sock+".ttrpc", SandboxImage,
		dirs["runc"], dirs["cni/net.d"], dirs["certs.d"], filepath.Join(nodeRoot, "opt"))
}

func kubeletConfig(sock string, port, healthz int, resolv, volumePlugins string) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine kind has cgroup v1 (with cgroup2 beside it) and no systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%s
address: %s
port: %d
healthzBindAddress: 127.0.0.1
healthzPort: %d
readOnlyPort: 0
# The API server reaches the kubelet (logs, exec) on the stack's bridge
# without a client certificate.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
# No KUBE-FIREWALL and friends in the host's iptables.
makeIPTablesUtilChains: false
resolvConf: %s
volumePluginDir: %s
serializeImagePulls: false
failSwapOn: false
# The machine's disk and memory are the tests', not the kubelet's to evict.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "1Mi", "nodefs.available": "1%%", "imagefs.available": "1%%", "nodefs.inodesFree": "1%%"}
nodeStatusUpdateFrequency: 2s
syncFrequency: 5s
`, sock, bridgeIP, port, healthz, resolv, volumePlugins)
}

// Trust makes containerd trust the registry at host by its CA from now on
// (a proxy a test puts in front of the stack's registry). containerd reads
// its hosts directory at each pull: no restart.
func (n *Node) Trust(host, caFile string) error {
	return writeRegistryHosts(filepath.Join(nodeRoot, "certs.d"), []RegistryTrust{{Host: host, CAFile: caFile}}, RegistryTrust{})
}

// PauseKubelet stops the kubelet process (SIGSTOP), as a hung kubelet: it
// renews no heartbeat and starts no Pod until ResumeKubelet. Tests of what
// a wait says about a silent node use it. It first waits (up to a minute)
// until the kubelet has a heartbeat Lease, which is what tells a stopped
// kubelet from a healthy one: a new kubelet's first try comes before its
// Node is registered, so its Lease appears one renew interval (a quarter
// of nodeLeaseDurationSeconds: 10 s) after it starts, seconds after the
// node is Ready.
func (n *Node) PauseKubelet(ctx context.Context) error {
	if n == nil || n.kubelet == nil || n.kubelet.cmd.Process == nil {
		return fmt.Errorf("no kubelet running")
	}
	err := n.kubelet.waitFor(ctx, time.Minute, func(ctx context.Context) error {
		lease, err := n.client.CoordinationV1().Leases("kube-node-lease").Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("node %s without its heartbeat Lease: %w", n.Name, err)
		}
		if lease.Spec.RenewTime == nil {
			return fmt.Errorf("node %s: its Lease not renewed yet", n.Name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return n.kubelet.cmd.Process.Signal(syscall.SIGSTOP)
}

// ResumeKubelet continues a kubelet PauseKubelet stopped (SIGCONT).
func (n *Node) ResumeKubelet() error {
	if n == nil || n.kubelet == nil || n.kubelet.cmd.Process == nil {
		return fmt.Errorf("no kubelet running")
	}
	return n.kubelet.cmd.Process.Signal(syscall.SIGCONT)
}
