package testenv

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// What a kubelet, containerd and the CNI bridge plugin change on the host,
// beyond their own directories (measured on this machine kind): these
// sysctls, iptables chains, the bridge and its veths, mounts, the kubepods
// cgroups, and a few fixed paths. hostChanges records the state before the
// node starts (in nodeRoot, so that a later run can undo a killed one) and
// undo puts it back.
var (
	nodeSysctls = []string{
		"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
		"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward",
	}
	// Fixed paths the node may create whatever its flags say.
	nodePaths = []string{
		"/var/lib/kubelet", "/var/lib/kubelet/device-plugins", "/usr/libexec/kubernetes",
		"/run/containerd", "/run/containerd/s", "/run/containerd/fifo", "/run/containerd/runc",
		"/run/netns", "/var/run/netns", "/etc/cni", "/opt/cni",
	}
	iptablesTables = []string{"filter", "nat", "mangle", "raw"}
)

type hostChanges struct {
	Sysctls map[string]string `json:"sysctls"`
	Existed map[string]bool   `json:"existed"`
	Chains  []string          `json:"chains"` // "iptables nat KUBE-X" present before
	Netns   []string          `json:"netns"`  // /run/netns entries before
}

const hostStateFile = nodeRoot + "/host-state.json"

// recordHost undoes what a killed run left behind, then records the host's
// state before this node changes it.
func recordHost() (*hostChanges, error) {
	cleanupLeftovers()
	h := &hostChanges{Sysctls: map[string]string{}, Existed: map[string]bool{}}
	for _, s := range nodeSysctls {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil {
			h.Sysctls[s] = strings.TrimSpace(string(b))
		}
	}
	for _, p := range nodePaths {
		_, err := os.Lstat(p)
		h.Existed[p] = err == nil
	}
	h.Chains = iptablesChains()
	h.Netns = netnsEntries()
	if err := os.MkdirAll(nodeRoot, 0o755); err != nil {
		return nil, err
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	return h, os.WriteFile(hostStateFile, b, 0o600)
}

// cleanupLeftovers stops and removes a node that a killed run left: its
// processes, then everything recorded in its host state file.
func cleanupLeftovers() {
	if _, err := os.Stat(nodeRoot); err != nil {
		return
	}
	killNaming(nodeRoot)
	killNodeProcesses()
	h := &hostChanges{Existed: map[string]bool{}}
	if b, err := os.ReadFile(hostStateFile); err == nil {
		_ = json.Unmarshal(b, h)
	} else {
		// No record: keep every fixed path, undo only what is ours.
		for _, p := range nodePaths {
			h.Existed[p] = true
		}
		h.Chains = iptablesChains()
		h.Netns = netnsEntries()
	}
	h.undo()
}

// killNaming kills (SIGKILL) every other process whose command line names
// path, until none is left (at most 5 s).
func killNaming(path string) {
	for i := 0; i < 50; i++ {
		pids := processesMatching(func(cmdline []string) bool { return slicesContains(cmdline, path) && !isSelf(cmdline) })
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func isSelf(cmdline []string) bool {
	exe, _ := os.Executable()
	return len(cmdline) > 0 && cmdline[0] == exe
}

// addBridge makes the pod network's bridge with the node's address, so the
// kubelet can serve on it before the first Pod exists (the CNI bridge
// plugin then uses it as it is).
func (h *hostChanges) addBridge() error {
	for _, args := range [][]string{
		{"link", "add", bridgeName, "type", "bridge"},
		{"addr", "add", bridgeIP + "/24", "dev", bridgeName},
		{"link", "set", bridgeName, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// undo puts the host back as recorded: mounts, network namespaces and
// links, iptables chains, cgroups, sysctls, paths, and the node's root.
func (h *hostChanges) undo() {
	if h == nil {
		return
	}
	before := map[string]bool{}
	for _, n := range h.Netns {
		before[n] = true
	}
	for round := 0; round < 5; round++ {
		mounts := ourMounts(before)
		if len(mounts) == 0 {
			break
		}
		for _, m := range mounts {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	for _, n := range netnsEntries() {
		if !before[n] {
			_ = os.Remove(n)
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show", "master", bridgeName).Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 1 {
				name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
				_ = exec.Command("ip", "link", "del", name).Run()
			}
		}
	}
	_ = exec.Command("ip", "link", "del", bridgeName).Run()
	deleteChains(h.Chains)
	removeKubepodsCgroups()
	for s, v := range h.Sysctls {
		_ = os.WriteFile("/proc/sys/"+s, []byte(v), 0o644)
	}
	// Deepest first, so a parent that existed keeps what it had.
	paths := slices.Clone(nodePaths)
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	for _, p := range paths {
		if !h.Existed[p] {
			_ = os.RemoveAll(p)
		}
	}
	_ = os.RemoveAll(nodeRoot)
}

// ourMounts lists, deepest first, the mounts under the node's root and the
// network namespaces not in before.
func ourMounts(before map[string]bool) []string {
	var out []string
	for _, m := range mountPoints() {
		if strings.HasPrefix(m, nodeRoot+"/") || m == nodeRoot ||
			((strings.HasPrefix(m, "/run/netns/") || strings.HasPrefix(m, "/var/run/netns/")) && !before[m]) {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func mountPoints() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 4 {
			out = append(out, unescapeMount(fs[4]))
		}
	}
	return out
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func netnsEntries() []string {
	var out []string
	for _, dir := range []string{"/run/netns", "/var/run/netns"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// iptablesChains lists every chain of the IPv4 and IPv6 tables as
// "iptables TABLE CHAIN".
func iptablesChains() []string {
	var out []string
	for _, bin := range []string{"iptables", "ip6tables"} {
		for _, t := range iptablesTables {
			b, err := exec.Command(bin+"-save", "-t", t).Output()
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(line, ":") {
					out = append(out, bin+" "+t+" "+strings.Fields(line[1:])[0])
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// deleteChains removes the chains not in before, with the rules that jump
// to them.
func deleteChains(before []string) {
	had := map[string]bool{}
	for _, c := range before {
		had[c] = true
	}
	for _, c := range iptablesChains() {
		if had[c] {
			continue
		}
		f := strings.Fields(c)
		bin, table, chain := f[0], f[1], f[2]
		if rules, err := exec.Command(bin+"-save", "-t", table).Output(); err == nil {
			for _, rule := range strings.Split(string(rules), "\n") {
				if strings.HasPrefix(rule, "-A ") && strings.Contains(rule+" ", " -j "+chain+" ") {
					args := append([]string{"-t", table, "-D"}, strings.Fields(rule)[1:]...)
					_ = exec.Command(bin, args...).Run()
				}
			}
		}
		_ = exec.Command(bin, "-t", table, "-F", chain).Run()
		_ = exec.Command(bin, "-t", table, "-X", chain).Run()
	}
}

// cgroupRoots are the hierarchies a kubepods tree can be in: each cgroup v1
// controller and the unified (v2) one.
func cgroupRoots() []string {
	var out []string
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		p := filepath.Join("/sys/fs/cgroup", e.Name())
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			out = append(out, p)
		}
	}
	return append(out, "/sys/fs/cgroup")
}

func kubepodsDirs() []string {
	var out []string
	for _, r := range cgroupRoots() {
		if fi, err := os.Stat(filepath.Join(r, "kubepods")); err == nil && fi.IsDir() {
			out = append(out, filepath.Join(r, "kubepods"))
		}
	}
	return out
}

// kubepodsProcesses lists the processes in any kubepods cgroup.
func kubepodsProcesses() []int {
	seen := map[int]bool{}
	for _, d := range kubepodsDirs() {
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || e.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	out := make([]int, 0, len(seen))
	for pid := range seen {
		out = append(out, pid)
	}
	return out
}

// removeKubepodsCgroups removes the kubepods trees, deepest first.
func removeKubepodsCgroups() {
	for _, d := range kubepodsDirs() {
		var dirs []string
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			for try := 0; try < 20; try++ {
				if err := syscall.Rmdir(dirs[i]); err == nil || errors.Is(err, syscall.ENOENT) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}

// ProcessesMatching lists, as command lines, the processes that match
// accepts.
func ProcessesMatching(match func(cmdline []string) bool) []string {
	var out []string
	for _, pid := range processesMatching(match) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " "))
	}
	sort.Strings(out)
	return out
}

// processesMatching lists the processes whose command line match accepts.
func processesMatching(match func(cmdline []string) bool) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		if match(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// HostState is what a node changes on the machine, as seen from outside:
// a test compares it before a stack starts and after it stops. It leaves
// out what other stacks on the machine change while it runs (test
// packages run at once): their processes and BuildKit's mounts.
type HostState struct {
	Processes []string          // the node's processes (kubelet, containerd, shims)
	Mounts    []string          // mount points a node makes
	Links     []string          // network links
	Chains    []string          // iptables chains
	Cgroups   []string          // kubepods cgroup trees
	Sysctls   map[string]string // the sysctls a node changes
	Paths     map[string]bool   // the fixed paths a node may create
}

// ReadHostState reads the machine's current HostState.
func ReadHostState() HostState {
	s := HostState{Sysctls: map[string]string{}, Paths: map[string]bool{}}
	names := []string{"kubelet", "containerd", "containerd-shim-runc-v2"}
	s.Processes = ProcessesMatching(func(cmdline []string) bool {
		return slices.Contains(names, filepath.Base(cmdline[0])) || slicesContains(cmdline, nodeRoot)
	})
	for _, m := range mountPoints() {
		for _, p := range []string{nodeRoot, "/run/netns", "/var/run/netns", "/run/containerd", "/var/lib/kubelet"} {
			if m == p || strings.HasPrefix(m, p+"/") {
				s.Mounts = append(s.Mounts, m)
			}
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 1 {
				s.Links = append(s.Links, strings.TrimSuffix(f[1], ":"))
			}
		}
	}
	s.Chains = iptablesChains()
	s.Cgroups = kubepodsDirs()
	for _, k := range nodeSysctls {
		if b, err := os.ReadFile("/proc/sys/" + k); err == nil {
			s.Sysctls[k] = strings.TrimSpace(string(b))
		}
	}
	for _, p := range append(slices.Clone(nodePaths), nodeRoot) {
		_, err := os.Lstat(p)
		s.Paths[p] = err == nil
	}
	sort.Strings(s.Mounts)
	sort.Strings(s.Links)
	return s
}
