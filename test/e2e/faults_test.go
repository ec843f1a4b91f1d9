package e2e

import (
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/fail"
)

// TestPushThroughRegistryFaults pushes through a loopback proxy in front of
// the real registry that answers 503 or 429 to a share of requests, drops
// some connections mid-response and delays others. The push must complete
// with the built digest (retries with backoff), the tag must resolve to a
// complete image, and a second push must upload no blob again.
func TestPushThroughRegistryFaults(t *testing.T) {
	t.Parallel()
	// On a registry of its own. On the stack's registry its verify-pull
	// --full once read the planner layer with its size but another digest
	// (exit 12), as TestTokenPublicPackage's did later: not concurrent
	// uploads nor this proxy's retries, but TestVerifyPullDeeper flipping
	// 16 bytes of its planner layer in the registry's storage, where one
	// blob per digest serves every repository: it corrupted the layer of
	// every test's planner image. A test corrupts a layer of its own with
	// testenv.Registry.CorruptImage.
	reg, env := ownRegistry(t)
	layout, digest := buildImage(t, "0.7.0")
	// Each distinct request fails at its first attempt by turns with 503,
	// 429 or a delay; its retry goes through.
	var mu sync.Mutex
	seen := map[string]int{}
	var injected atomic.Int64
	proxy, err := reg.StartProxy(t.TempDir(), func(r *http.Request) (int, string, bool) {
		if r.URL.Path == "/v2/" {
			return 0, "", false
		}
		mu.Lock()
		key := r.Method + " " + r.URL.Path
		if i := strings.Index(key, "/blobs/uploads/"); i >= 0 {
			// An upload's URL names its session; a retried upload opens a
			// new one, so key by what the request does, not by the session.
			key = key[:i] + "/blobs/uploads/"
		}
		_, again := seen[key]
		seen[key] = len(seen)
		turn := seen[key] % 3
		mu.Unlock()
		if again {
			return 0, "", false
		}
		switch turn {
		case 0:
			injected.Add(1)
			return http.StatusServiceUnavailable, `{"errors":[{"code":"UNAVAILABLE","message":"try again"}]}`, true
		case 1:
			injected.Add(1)
			return http.StatusTooManyRequests, `{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`, true
		}
		time.Sleep(300 * time.Millisecond) // slow, then forwarded
		return 0, "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	args := []string{"push", "--oci-layout", layout, "--version", "0.7.0", "--registry", proxy.Host, "--registry-ca", proxy.CAFile, "--owner", "faults"}
	r := idopipe(t, env, args...)
	if r.code != 0 || !strings.Contains(r.stdout, "@"+digest) {
		t.Fatalf("push through faults:\n%s", r)
	}
	t.Logf("push through faults: %d requests at the proxy, %d answered with 503/429", proxy.Requests(), injected.Load())
	if injected.Load() == 0 {
		t.Fatal("no fault was injected")
	}
	// The tag resolves, straight from the registry, to the complete image.
	v := idopipe(t, env, "verify-pull", "--full", "--registry-ca", reg.CAFile, "--digest", digest, reg.Host+"/faults/planner:0.7.0")
	if v.code != 0 {
		t.Fatalf("verify after the faulty push:\n%s", v)
	}
	uploads := proxy.Count(http.MethodPost, "/v2/faults/planner/blobs/uploads/") + proxy.Count(http.MethodPatch, "/v2/faults/planner/blobs/uploads/")
	r = idopipe(t, env, args...)
	if r.code != 0 {
		t.Fatalf("second push:\n%s", r)
	}
	if again := proxy.Count(http.MethodPost, "/v2/faults/planner/blobs/uploads/") + proxy.Count(http.MethodPatch, "/v2/faults/planner/blobs/uploads/"); again != uploads {
		t.Errorf("the second push started %d blob uploads; the registry held them all", again-uploads)
	}
}

// TestPushGivesUpAfterBoundedRetries: a registry that always answers 503
// fails the push with a clear error after the retries, not forever.
func TestPushGivesUpAfterBoundedRetries(t *testing.T) {
	t.Parallel()
	layout, _ := buildImage(t, "0.7.1")
	proxy, err := stack.Registry.StartProxy(t.TempDir(), func(r *http.Request) (int, string, bool) {
		if r.URL.Path == "/v2/" {
			return 0, "", false
		}
		return http.StatusServiceUnavailable, `{"errors":[{"code":"UNAVAILABLE","message":"down for maintenance"}]}`, true
	})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	r := idopipe(t, nil, "push", "--oci-layout", layout, "--version", "0.7.1", "--registry", proxy.Host, "--registry-ca", proxy.CAFile, "--owner", "faults-down")
	if r.code != int(fail.Registry) || !strings.Contains(r.stderr, "refused the push") || !strings.Contains(r.stderr, "503") {
		t.Fatalf("push against a registry that is down:\n%s", r)
	}
	// Nothing was tagged.
	v := idopipe(t, nil, "verify-pull", "--registry-ca", stack.Registry.CAFile, stack.Registry.Host+"/faults-down/planner:0.7.1")
	if v.code != int(fail.NotFound) {
		t.Errorf("the failed push left a tag:\n%s", v)
	}
}

// TestPushThroughConnectionResets: every blob upload's first attempt has
// its connection dropped halfway through the body; the push retries and
// completes with the right digest.
func TestPushThroughConnectionResets(t *testing.T) {
	t.Parallel()
	dir, digest := randomLayout(t, 256<<10, 3)
	var mu sync.Mutex
	cut := map[string]bool{}
	proxy, err := stack.Registry.StartProxy(t.TempDir(), func(r *http.Request) (int, string, bool) {
		if r.Method != http.MethodPatch && r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/blobs/uploads/") || r.ContentLength == 0 {
			return 0, "", false
		}
		mu.Lock()
		defer mu.Unlock()
		if len(cut) < 3 && !cut[r.URL.Path] {
			cut[r.URL.Path] = true
			return testenv.Reset, "", true
		}
		return 0, "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	r := idopipe(t, nil, "push", "--oci-layout", dir, "--digest", digest, "--version", "resets",
		"--registry", proxy.Host, "--registry-ca", proxy.CAFile, "--owner", "resets")
	if r.code != 0 || !strings.Contains(r.stdout, "@"+digest) {
		t.Fatalf("push through connection resets:\n%s", r)
	}
	if len(cut) == 0 {
		t.Fatal("no connection was reset")
	}
	v := idopipe(t, nil, "verify-pull", "--full", "--registry-ca", stack.Registry.CAFile, "--digest", digest, stack.Registry.Host+"/resets/planner:resets")
	if v.code != 0 {
		t.Fatalf("verify after resets:\n%s", v)
	}
}

// TestPushKilledAndRerun: idopipe is SIGKILLed while a slow registry takes
// its uploads; the rerun completes and uploads no blob the registry already
// holds (counted at the proxy).
func TestPushKilledAndRerun(t *testing.T) {
	t.Parallel()
	dir, digest := randomLayout(t, 128<<10, 4)
	var slow atomic.Bool
	slow.Store(true)
	var committed atomic.Int64
	proxy, err := stack.Registry.StartProxy(t.TempDir(), func(r *http.Request) (int, string, bool) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") {
			if slow.Load() && committed.Add(1) > 1 {
				time.Sleep(5 * time.Second) // the second and later blobs hang
			}
		}
		return 0, "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	args := []string{"push", "--oci-layout", dir, "--digest", digest, "--version", "killed", "--jobs", "1",
		"--registry", proxy.Host, "--registry-ca", proxy.CAFile, "--owner", "killed"}
	cmd := exec.Command(binary, args...)
	cmd.Env = mergeEnv([]string{"PATH=" + getenv("PATH"), "HOME=" + getenv("HOME")}, stack.Env())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for committed.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	slow.Store(false)
	uploadsBefore := proxy.Count(http.MethodPost, "/v2/killed/planner/blobs/uploads/")
	r := idopipe(t, nil, args...)
	if r.code != 0 || !strings.Contains(r.stdout, "@"+digest) {
		t.Fatalf("rerun after SIGKILL:\n%s", r)
	}
	started := proxy.Count(http.MethodPost, "/v2/killed/planner/blobs/uploads/") - uploadsBefore
	// 4 layers + 1 config = 5 blobs; at least the first was committed
	// before the kill, so the rerun starts at most 4 uploads.
	if started >= 5 {
		t.Errorf("the rerun started %d uploads; the registry already held at least one blob", started)
	}
	t.Logf("rerun after SIGKILL started %d of 5 blob uploads", started)
	if v := idopipe(t, nil, "verify-pull", "--full", "--registry-ca", stack.Registry.CAFile, "--digest", digest, stack.Registry.Host+"/killed/planner:killed"); v.code != 0 {
		t.Fatalf("verify after the rerun:\n%s", v)
	}
}
