package build_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/fail"
)

// freshBuildKit starts a buildkitd with empty state (no cache at all) that
// trusts the stack's registry.
func freshBuildKit(t *testing.T) *testenv.BuildKit {
	t.Helper()
	dir, err := os.MkdirTemp("", "idopipe-fresh-buildkit-")
	if err != nil {
		t.Fatal(err)
	}
	bk, err := testenv.StartBuildKit(context.Background(), dir, stack.RegistryCAs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bk.Stop()
		_ = os.RemoveAll(dir)
	})
	return bk
}

// plannerSource is the planner-shaped fixture (a multi-stage build with a
// RUN step, the final stage FROM scratch).
func plannerSource(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := testenv.PlannerFixture(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRegistryCache: a build exports its cache to the TLS+htpasswd registry
// as a :buildcache tag; a freshly started buildkitd with empty state
// imports it and reports every step CACHED, and builds the same image.
func TestRegistryCache(t *testing.T) {
	testenv.NeedStack(t)
	src := plannerSource(t)
	ref := stack.Registry.Host + "/cache-test/planner:buildcache"
	creds := build.WithCredentials(build.StaticCredentials{
		Hosts: []string{stack.Registry.Host}, Username: stack.Registry.Username, Secret: stack.Registry.Password,
	})

	s := spec(t, src)
	s.SourceDateEpoch = "1700000000"
	s.CacheTo = []string{"type=registry,ref=" + ref + ",mode=max"}
	start := time.Now()
	first, _ := mustBuild(t, s, creds)
	t.Logf("build with cache export: %s", time.Since(start))

	// A wrong token is refused by the registry, and said so.
	bad := spec(t, src)
	bad.CacheTo = s.CacheTo
	var bp progress
	_, err := build.Build(context.Background(), bad, append(bp.opts(), build.WithCredentials(build.StaticCredentials{
		Hosts: []string{stack.Registry.Host}, Username: stack.Registry.Username, Secret: "wrong",
	}))...)
	if fail.ClassOf(err) != fail.Credentials || !strings.Contains(err.Error(), `answered "denied: denied" at its token endpoint to the credentials given`) {
		t.Errorf("cache export with a wrong token: %v, want the token endpoint's refusal (GHCR's 403 denied)", err)
	}
	t.Logf("wrong token: %v", err)

	fresh := freshBuildKit(t)
	at := build.WithAddress(fresh.Address)

	// The control: the fresh daemon has nothing cached.
	s = spec(t, src)
	s.SourceDateEpoch = "1700000000"
	var p progress
	start = time.Now()
	cold, err := build.Build(context.Background(), s, append(p.opts(), at)...)
	if err != nil {
		t.Fatalf("cold build: %v\n%s", err, p.String())
	}
	t.Logf("cold build on a fresh buildkitd: %s", time.Since(start))
	if cold.Cached != 0 || strings.Contains(p.String(), "CACHED") {
		t.Fatalf("a fresh buildkitd reported cached steps:\n%s", p.String())
	}

	fresh = freshBuildKit(t)
	at = build.WithAddress(fresh.Address)
	s = spec(t, src)
	s.SourceDateEpoch = "1700000000"
	s.CacheFrom = []string{"type=registry,ref=" + ref}
	p = progress{}
	start = time.Now()
	warm, err := build.Build(context.Background(), s, append(p.opts(), at, creds)...)
	if err != nil {
		t.Fatalf("build with cache import: %v\n%s", err, p.String())
	}
	t.Logf("build on a fresh buildkitd importing the registry cache: %s (%d/%d steps cached)", time.Since(start), warm.Cached, warm.Steps)
	assertAllCached(t, warm, p.String())
	if warm.Digest != first.Digest {
		t.Errorf("the cached build gave %s, the first %s", warm.Digest, first.Digest)
	}
}

// TestLocalCache: --cache-to type=local,dest=DIR, then a fresh buildkitd
// with --cache-from type=local,src=DIR reports every step CACHED.
func TestLocalCache(t *testing.T) {
	testenv.NeedStack(t)
	src := plannerSource(t)
	cacheDir := filepath.Join(t.TempDir(), "cache")
	s := spec(t, src)
	s.CacheTo = []string{"type=local,dest=" + cacheDir + ",mode=max"}
	mustBuild(t, s)
	if _, err := os.Stat(filepath.Join(cacheDir, "index.json")); err != nil {
		t.Fatalf("no cache written: %v", err)
	}

	fresh := freshBuildKit(t)
	s = spec(t, src)
	s.CacheFrom = []string{"type=local,src=" + cacheDir}
	var p progress
	res, err := build.Build(context.Background(), s, build.WithAddress(fresh.Address), build.WithProgress(&p.Buffer, "plain"))
	if err != nil {
		t.Fatalf("build with local cache import: %v\n%s", err, p.String())
	}
	assertAllCached(t, res, p.String())
}

// assertAllCached: no Dockerfile step ran again. The build stage's steps
// are reported CACHED; the final stage's layer, which the export needs, is
// either CACHED or downloaded from the cache (a blob line), not built.
func assertAllCached(t *testing.T, res build.Result, log string) {
	t.Helper()
	if res.Steps != 4 || res.Cached < 3 {
		t.Fatalf("%d of %d steps cached, want at least 3 of 4:\n%s", res.Cached, res.Steps, log)
	}
	for _, step := range []string{"WORKDIR /app", "COPY planner /app/bin/planner", "RUN chmod 0755"} {
		if !stepLine(log, step, func(l string) bool { return l == "CACHED" }) {
			t.Errorf("step %q not reported CACHED:\n%s", step, log)
		}
	}
	final := "COPY --from=build"
	if !stepLine(log, final, fromCache) {
		t.Errorf("step %q neither CACHED nor loaded from the cache:\n%s", final, log)
	}
}

// fromCache tells a step's progress line that says it was not built: CACHED,
// or a blob of its layer downloaded from the imported cache.
func fromCache(line string) bool { return line == "CACHED" || strings.HasPrefix(line, "sha256:") }

// stepLine tells whether the plain progress log shows the step (#N NAME)
// and then a line "#N REST" for which match(REST) holds.
func stepLine(log, step string, match func(string) bool) bool {
	ids := map[string]bool{}
	for line := range strings.SplitSeq(log, "\n") {
		id, rest, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(id, "#") {
			continue
		}
		if strings.Contains(rest, step) {
			ids[id] = true
		}
		if ids[id] && match(rest) {
			return true
		}
	}
	return false
}
