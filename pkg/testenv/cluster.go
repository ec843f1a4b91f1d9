package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// Cluster is a Kubernetes control plane without kubelets: etcd and
// kube-apiserver (envtest), kube-scheduler, and kwok managing one fake node
// labelled as a control-plane node (the IDO Pods require one).
type Cluster struct {
	Kubeconfig string       // admin kubeconfig file
	Config     *rest.Config // the same, for in-process clients
	Client     kubernetes.Interface
	NodeName   string

	env       *envtest.Environment
	scheduler *process
	kwok      *process
}

// FakeNodeAnnotation marks the nodes kwok manages.
const FakeNodeAnnotation = "kwok.x-k8s.io/node"

func startCluster(ctx context.Context, tools, dir string) (c *Cluster, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c = &Cluster{NodeName: "kwok-control-plane"}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	c.env = &envtest.Environment{BinaryAssetsDirectory: tools, ControlPlaneStartTimeout: time.Minute}
	api := c.env.ControlPlane.GetAPIServer()
	// Certificates in a directory of ours: envtest keeps them (and its port)
	// across StopAPIServer/StartAPIServer, so kubeconfigs stay valid.
	api.CertDir = filepath.Join(dir, "apiserver")
	if err := os.MkdirAll(api.CertDir, 0o700); err != nil {
		return nil, err
	}
	// No controller-manager runs: without these the ServiceAccount admission
	// wants a "default" ServiceAccount and new nodes keep a not-ready taint.
	api.Configure().Set("disable-admission-plugins", "ServiceAccount,TaintNodesByCondition")
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
	stages, err := kwokStages(tools, dir)
	if err != nil {
		return nil, err
	}
	c.kwok, err = startProcess(dir, "kwok", filepath.Join(tools, "kwok"), []string{
		"--kubeconfig", c.Kubeconfig, "--config", stages,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + FakeNodeAnnotation + "=fake",
		"--node-lease-duration-seconds=0",
	}, nil)
	if err != nil {
		return nil, err
	}
	if err := c.addNode(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// FaultLabel on a Pod makes kwok hold it in a waiting state instead of
// Running: the label's value is the container waiting reason
// (ErrImagePull, CrashLoopBackOff, ...), the FaultMessage annotation its
// message, as a kubelet would report them.
const (
	FaultLabel   = "idopipe.test/fault"
	FaultMessage = "idopipe.test/message"
)

// faultStage is a kwok Stage for Pods carrying FaultLabel.
const faultStage = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: idopipe-pod-fault
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.labels["` + FaultLabel + `"]'
      operator: 'Exists'
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.containerStatuses'
      operator: 'DoesNotExist'
  next:
    statusTemplate: |
      {{ $reason := index .metadata.labels "` + FaultLabel + `" }}
      {{ $msg := index .metadata.annotations "` + FaultMessage + `" }}
      phase: Pending
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          waiting:
            reason: {{ $reason | Quote }}
            message: {{ $msg | Quote }}
      {{ end }}
`

// kwokStages writes kwok's stage definitions (node initialise and
// heartbeat, pod ready/complete/delete) into one config file, with the
// pod-ready stage leaving FaultLabel Pods to faultStage.
func kwokStages(tools, dir string) (string, error) {
	files, err := filepath.Glob(filepath.Join(tools, "kwok-stages", "*.yaml"))
	if err != nil || len(files) == 0 {
		return "", fmt.Errorf("no kwok stages under %s/kwok-stages: run `make tools`", tools)
	}
	docs := []string{strings.TrimSpace(faultStage)}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		if filepath.Base(f) == "pod-ready.yaml" {
			if b, err = excludeFaults(b); err != nil {
				return "", fmt.Errorf("%s: %w", f, err)
			}
		}
		docs = append(docs, strings.TrimSpace(string(b)))
	}
	p := filepath.Join(dir, "kwok-stages.yaml")
	return p, os.WriteFile(p, []byte(strings.Join(docs, "\n---\n")+"\n"), 0o644)
}

// excludeFaults adds "FaultLabel does not exist" to a stage's selector.
func excludeFaults(stage []byte) ([]byte, error) {
	var m map[string]any
	if err := yaml.Unmarshal(stage, &m); err != nil {
		return nil, err
	}
	spec, _ := m["spec"].(map[string]any)
	sel, _ := spec["selector"].(map[string]any)
	if sel == nil {
		return nil, fmt.Errorf("stage has no spec.selector")
	}
	exprs, _ := sel["matchExpressions"].([]any)
	sel["matchExpressions"] = append(exprs, map[string]any{"key": `.metadata.labels["` + FaultLabel + `"]`, "operator": "DoesNotExist"})
	return yaml.Marshal(m)
}

// addNode registers the fake control-plane node and waits until kwok has
// made it Ready.
func (c *Cluster) addNode(ctx context.Context) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        c.NodeName,
		Annotations: map[string]string{FakeNodeAnnotation: "fake"},
		Labels: map[string]string{
			"type":                                  "kwok",
			"kubernetes.io/arch":                    "amd64",
			"kubernetes.io/os":                      "linux",
			"kubernetes.io/hostname":                c.NodeName,
			"node-role.kubernetes.io/control-plane": "",
		},
	}}
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create fake node: %w", err)
	}
	return c.kwok.waitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("node %s not Ready yet", c.NodeName)
	})
}

// StopAPIServer kills kube-apiserver (SIGKILL, as a crash would), leaving
// etcd, the scheduler and kwok running: a cluster whose API server went
// away mid-release.
func (c *Cluster) StopAPIServer() error {
	api := c.env.ControlPlane.GetAPIServer()
	pids, err := pidsWithArg("--cert-dir=" + api.CertDir)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return api.Stop() // reaps the process and resets envtest's state
}

// pidsWithArg lists the processes whose command line has arg.
func pidsWithArg(arg string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, a := range strings.Split(string(b), "\x00") {
			if a == arg {
				pids = append(pids, pid)
			}
		}
	}
	return pids, nil
}

// StartAPIServer starts kube-apiserver again on the same port with the same
// certificates, and waits until it serves.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	if err := c.env.ControlPlane.GetAPIServer().Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.Client.Discovery().ServerVersion(); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not serving after a restart: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop ends kwok, the scheduler, the API server and etcd.
func (c *Cluster) Stop() {
	if c == nil {
		return
	}
	c.kwok.stop(5 * time.Second)
	c.scheduler.stop(5 * time.Second)
	if c.env != nil {
		_ = c.env.Stop()
	}
}
