package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// kubeCases measure builds through a BuildKit builder in the cluster.
var kubeCases = []caseDef{
	{ID: "kube-build-cold", Title: "build planner fixture through a builder in the cluster, cold (its cache pruned before each run)",
		Tools: []string{"idopipe", "idopipe (local)", "buildctl kube-pod://"},
		Note:  "`idopipe build --buildkit-host kube://NS/NAME` (client-go pods/exec of `buildctl dial-stdio` in the builder Pod, made by `idopipe buildkit create --kubernetes`) vs the same build on the stack's local buildkitd vs `buildctl --addr kube-pod://POD` (BuildKit's helper, `kubectl exec`); the builder runs on the stack's node with the same 2 cores"},
	{ID: "kube-build-cached", Title: "the same build through the builder, cached", Tools: []string{"idopipe", "idopipe (local)", "buildctl kube-pod://"}},
	{ID: "kube-connect", Title: "connect to the builder through the API server and ask BuildKit its workers", Tools: []string{"idopipe", "buildctl kube-pod://"},
		Note: "`idopipe buildkit status --kubernetes` (list the Ready replicas, exec stream, Info, ListWorkers) vs `buildctl --addr kube-pod://POD debug workers` (kubectl exec); the set-up cost every kube:// build pays once"},
}

func init() { cases = append(cases, kubeCases...) }

// groupKube creates a builder in the cluster (untimed) and measures
// builds and connections through it beside the local daemon.
func (b *bench) groupKube() error {
	if os.Getenv("IDOPIPE_TEST_BUILDER_IMAGE") == "" {
		return errors.New("no builder image in the node's mirror: run the bench under `localstack -kube-builder` (make bench does)")
	}
	base, err := layoutDigest(b.env["BUSYBOX"])
	if err != nil {
		return err
	}
	ns := b.owner + "-kb"
	if err := b.untimed("kube-namespace", []string{b.kubectl, "create", "namespace", ns}); err != nil {
		return err
	}
	start := time.Now()
	if err := b.untimed("kube-create", b.idopipe("buildkit", "create", "--kubernetes", "-n", ns, "bk", "--timeout", "3m")); err != nil {
		return err
	}
	b.note(fmt.Sprintf("kube: `idopipe buildkit create --kubernetes` (apply, image pull from the node's mirror, buildkitd start, readiness by `buildctl debug workers`) took %.1fs", time.Since(start).Seconds()))
	pod, err := b.output("kube-pod", cmd{argv: []string{b.kubectl, "-n", ns, "get", "pods", "-l", "app.kubernetes.io/instance=bk", "-o", "jsonpath={.items[0].metadata.name}"}})
	if err != nil {
		return err
	}
	kubePod := "kube-pod://" + strings.TrimSpace(pod) + "?namespace=" + ns
	// BuildKit's kube-pod:// helper runs the kubectl on $PATH.
	withKubectl := "PATH=" + filepath.Dir(b.kubectl) + string(os.PathListSeparator) + os.Getenv("PATH")
	host := "kube://" + ns + "/bk"
	for r := 0; r < b.cfg.Runs; r++ {
		for i, tool := range rotate([]string{"idopipe", "idopipe (local)", "buildctl kube-pod://"}, r) {
			prune := []string{b.buildctl, "prune", "--all"}
			if tool != "idopipe (local)" {
				prune = []string{b.buildctl, "--addr", kubePod, "prune", "--all"}
			}
			if err := b.untimed("prune", prune, withKubectl); err != nil {
				return err
			}
			for _, id := range []string{"kube-build-cold", "kube-build-cached"} {
				out := filepath.Join(b.work, "kube", fmt.Sprintf("%d-%s-%s", r, safe(tool), id))
				var c cmd
				switch tool {
				case "buildctl kube-pod://":
					c = cmd{env: []string{withKubectl}, argv: []string{b.buildctl, "--addr", kubePod, "build", "--frontend", "dockerfile.v0", "--progress", "plain",
						"--local", "context=" + b.env["SRC"], "--local", "dockerfile=" + b.env["SRC"],
						"--oci-layout", "busybox=" + b.env["BUSYBOX"], "--opt", "context:golang:1.24.6=oci-layout://busybox@" + base,
						"--output", "type=oci,dest=" + out + ",tar=false,name=planner:0.4.0"}}
				default:
					args := []string{"build", "--source", b.env["SRC"], "--build-context", "golang:1.24.6=oci-layout://" + b.env["BUSYBOX"],
						"--oci-layout", out, "--progress", "plain"}
					if tool == "idopipe" {
						args = append(args, "--buildkit-host", host)
					}
					c = cmd{json: true, argv: b.idopipe(args...)}
				}
				b.measure(id, tool, r, i, c)
			}
		}
		for i, tool := range rotate([]string{"idopipe", "buildctl kube-pod://"}, r) {
			c := cmd{argv: b.idopipe("buildkit", "status", "--kubernetes", "-n", ns, "bk")}
			if tool != "idopipe" {
				c = cmd{env: []string{withKubectl}, argv: []string{b.buildctl, "--addr", kubePod, "debug", "workers"}}
			}
			b.measure("kube-connect", tool, r, i, c)
		}
	}
	_ = b.untimed("kube-rm", b.idopipe("buildkit", "rm", "--kubernetes", "-n", ns, "bk", "--timeout", "0"))
	return os.RemoveAll(filepath.Join(b.work, "kube"))
}
