package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestStackLeavesHostAsFound starts the whole stack with its real node,
// runs a Pod that pulls the mirror's mongo stand-in and answers on its pod
// IP, stops the stack, and compares what a node changes on the host
// (processes, mounts, links, iptables chains, cgroups, sysctls, paths)
// with the state before.
func TestStackLeavesHostAsFound(t *testing.T) {
	NeedStack(t)
	if _, err := ToolsDir(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	held := machineLocks(t)
	before := ReadHostState()
	s, err := Start(ctx, "", withHeld(All, held))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			s.Stop()
		}
	}()
	during := ReadHostState()
	if reflect.DeepEqual(before.Links, during.Links) {
		t.Errorf("the node's bridge %s is not up while the stack runs", bridgeName)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "mongo", Namespace: "default"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "mongo", Image: "mongo:6"}}},
	}
	c := s.Cluster.Client
	if _, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ip string
	deadline := time.Now().Add(time.Minute)
	for ip == "" {
		p, err := c.CoreV1().Pods("default").Get(ctx, "mongo", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
			ip = p.Status.PodIP
		} else if time.Now().After(deadline) {
			t.Fatalf("mongo Pod not running after a minute: %+v", p.Status)
		} else {
			time.Sleep(200 * time.Millisecond)
		}
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "27017"), 5*time.Second)
	if err != nil {
		t.Fatalf("the mongo stand-in does not answer on %s:27017: %v", ip, err)
	}
	b := make([]byte, 64)
	n, _ := conn.Read(b)
	conn.Close()
	if !strings.Contains(string(b[:n]), "mongod stand-in") {
		t.Errorf("27017 answered %q", b[:n])
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	after := ReadHostState()
	if left := ProcessesMatching(func(cmdline []string) bool { return slicesContains(cmdline, s.Dir) }); len(left) > 0 {
		t.Errorf("processes of the stack still run after Stop: %q", left)
	}
	compareHostStates(t, "after the stack stopped", before, after)
}

// TestStackCleanedAfterKill starts a stack with its node in a child process
// (this test binary again), kills the child with SIGKILL as a crash or an
// impatient Ctrl-C would, and checks that the reaper stopped every process
// of that stack and left the host as it was.
func TestStackCleanedAfterKill(t *testing.T) {
	NeedStack(t)
	held := machineLocks(t) // in the child, its parent's
	if os.Getenv("IDOPIPE_TEST_CHILD_STACK") == "1" {
		s, err := Start(context.Background(), "", withHeld(All, held))
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("up", s.Dir)
		time.Sleep(10 * time.Minute)
		return
	}
	before := ReadHostState()
	child := exec.Command(os.Args[0], "-test.run=^TestStackCleanedAfterKill$")
	child.Env = append(os.Environ(), "IDOPIPE_TEST_CHILD_STACK=1")
	held.Pass(child)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var dir string
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "up "); ok {
			dir = d
			break
		}
		if strings.HasPrefix(sc.Text(), "error") {
			t.Fatal(sc.Text())
		}
	}
	if dir == "" {
		t.Fatal("the child's stack did not come up")
	}
	if len(ProcessesMatching(func(cmdline []string) bool { return slicesContains(cmdline, dir) })) < 3 {
		t.Fatalf("the child's stack runs no processes naming %s", dir)
	}
	_ = child.Process.Kill()
	_ = child.Wait()
	// The reaper removes the stack's directory last, when it is done (it
	// shares the lock this package holds, so the lock cannot tell).
	deadline := time.Now().Add(time.Minute)
	for _, err := os.Stat(dir); err == nil && time.Now().Before(deadline); _, err = os.Stat(dir) {
		time.Sleep(100 * time.Millisecond)
	}
	if left := ProcessesMatching(func(cmdline []string) bool { return slicesContains(cmdline, dir) }); len(left) > 0 {
		t.Errorf("processes of the killed stack still run: %q", left)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the killed stack's directory %s is still there (%v)", dir, err)
	}
	after := ReadHostState()
	compareHostStates(t, "after the killed stack was reaped", before, after)
}

// withHeld is parts started on the held machine locks.
func withHeld(parts Parts, held *MachineLocks) Parts {
	parts.Held = held
	return parts
}

// compareHostStates reports each part of the host state that differs.
func compareHostStates(t *testing.T, when string, before, after HostState) {
	t.Helper()
	for _, d := range []struct {
		what          string
		before, after any
	}{
		{"processes", before.Processes, after.Processes},
		{"mounts", before.Mounts, after.Mounts},
		{"links", before.Links, after.Links},
		{"iptables chains", before.Chains, after.Chains},
		{"kubepods cgroups", before.Cgroups, after.Cgroups},
		{"sysctls", before.Sysctls, after.Sysctls},
		{"paths", before.Paths, after.Paths},
	} {
		if !reflect.DeepEqual(d.before, d.after) {
			t.Errorf("%s differ %s:\nbefore %v\nafter  %v", d.what, when, d.before, d.after)
		}
	}
}
