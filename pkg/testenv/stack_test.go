package testenv

import (
	"context"
	"fmt"
	"net"
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
	if _, err := ToolsDir(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before := ReadHostState()
	s, err := Start(ctx, "", All)
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
			t.Errorf("%s differ after the stack stopped:\nbefore %s\nafter  %s", d.what, fmt.Sprint(d.before), fmt.Sprint(d.after))
		}
	}
}
