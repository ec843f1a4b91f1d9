package build_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofrs/flock"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/fail"
)

// plannerShaped is a Dockerfile shaped like the real planner's: FROM
// golang:<tag> (a named context here), a RUN that writes the binary and a
// license tree, a final FROM scratch without /etc/passwd, USER by name.
const plannerShaped = `FROM golang:1.24.6 AS build
WORKDIR /app
COPY . ./
RUN mkdir -p /out && cp app.txt /out/planner && cp -r licenses /out/licenses && find . > /out/context-listing

FROM scratch
COPY --from=build /out/ /app/
USER nonroot:nonroot
ENTRYPOINT ["/app/planner"]
`

func plannerShapedSource(t *testing.T) string {
	t.Helper()
	files := map[string]string{"Dockerfile": plannerShaped, "app.txt": "planner\n"}
	for i := range 40 {
		files["licenses/mod"+strconv.Itoa(i)+"/LICENSE"] = "license " + strconv.Itoa(i) + "\n"
	}
	return writeFiles(t, files)
}

func plannerShapedSpec(t *testing.T, dir string) build.Spec {
	s := spec(t, dir)
	s.Contexts = map[string]string{"golang:1.24.6": "oci-layout://" + busybox}
	s.SourceDateEpoch = "1700000000"
	return s
}

// TestUnchangedRebuildSkipsExport: with SOURCE_DATE_EPOCH, a rebuild of
// unchanged inputs into the layout that holds the image does not export
// (and rewrite) it again, and reports the same digest; a changed input, a
// layout that lacks a blob, or a fresh layout is exported again, and a
// fresh layout gets the digest the first build had.
func TestUnchangedRebuildSkipsExport(t *testing.T) {
	testenv.NeedStack(t)
	dir := plannerShapedSource(t)
	s := plannerShapedSpec(t, dir)
	first, out := mustBuild(t, s)
	if strings.Contains(out, "not exported again") {
		t.Fatalf("the first build skipped its export:\n%s", out)
	}
	second, out := mustBuild(t, s)
	if !strings.Contains(out, "not exported again") || strings.Contains(out, "rewriting layers") {
		t.Errorf("the unchanged rebuild exported again:\n%s", out)
	}
	if second.Digest != first.Digest || second.Steps != first.Steps || second.Cached != second.Steps {
		t.Errorf("unchanged rebuild: %+v, first %+v", second, first)
	}

	// A fresh layout is exported to, and gets the same digest.
	fresh := s
	fresh.Layout = filepath.Join(t.TempDir(), "oci")
	res, out := mustBuild(t, fresh)
	if strings.Contains(out, "not exported again") || res.Digest != first.Digest {
		t.Errorf("fresh layout: %s (first %s)\n%s", res.Digest, first.Digest, out)
	}
	readImage(t, fresh.Layout, res.Digest)

	// A layout missing one of the image's blobs is exported to again.
	img := readImage(t, s.Layout, first.Digest)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	ld, _ := layers[len(layers)-1].Digest()
	if err := os.Remove(filepath.Join(s.Layout, "blobs", "sha256", ld.Hex)); err != nil {
		t.Fatal(err)
	}
	res, out = mustBuild(t, s)
	if strings.Contains(out, "not exported again") || res.Digest != first.Digest {
		t.Errorf("layout missing a blob: %s\n%s", res.Digest, out)
	}
	if _, err := readImage(t, s.Layout, res.Digest).Layers(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Layout, "blobs", "sha256", ld.Hex)); err != nil {
		t.Errorf("the missing blob was not exported again: %v", err)
	}

	// A changed input is built and exported.
	if err := os.WriteFile(filepath.Join(dir, "app.txt"), []byte("planner v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed, out := mustBuild(t, s)
	if strings.Contains(out, "not exported again") || changed.Digest == first.Digest {
		t.Errorf("changed input: %s (first %s)\n%s", changed.Digest, first.Digest, out)
	}
	if got := fileInImage(t, readImage(t, s.Layout, changed.Digest), "/app/planner"); got != "planner v2\n" {
		t.Errorf("/app/planner holds %q", got)
	}

	// Another epoch is another export of the same build.
	other := s
	other.SourceDateEpoch = "1700000001"
	res, out = mustBuild(t, other)
	if strings.Contains(out, "not exported again") || res.Digest == changed.Digest {
		t.Errorf("another epoch: %s\n%s", res.Digest, out)
	}
}

// contextSent is the size of the build context the session sent, from
// BuildKit's "transferring context: 1.23kB" progress line.
var contextSent = regexp.MustCompile(`transferring context: ([0-9.]+)([kMG]?)B`)

// sentBytes is the largest context transfer in a plain progress log (its
// lines count up to the total), in bytes.
func sentBytes(t *testing.T, log string) float64 {
	t.Helper()
	scale := map[string]float64{"": 1, "k": 1e3, "M": 1e6, "G": 1e9}
	var most float64
	for _, m := range contextSent.FindAllStringSubmatch(log, -1) {
		n, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		most = max(most, n*scale[m[2]])
	}
	return most
}

// TestLayoutInsideContext: a layout inside the build context (where the
// old default .idopipe/oci lay in a checkout) is not part of the context:
// the second build is fully cached, sends no more context than the first,
// and the image does not hold the layout.
func TestLayoutInsideContext(t *testing.T) {
	testenv.NeedStack(t)
	dir := plannerShapedSource(t)
	s := plannerShapedSpec(t, dir)
	s.Layout = filepath.Join(dir, ".idopipe", "oci")
	s.SourceDateEpoch = build.EpochNone // every export writes the layout anew
	first, out1 := mustBuild(t, s)
	second, out2 := mustBuild(t, s)
	if second.Cached != second.Steps {
		t.Errorf("second build: %d of %d steps cached:\n%s", second.Cached, second.Steps, out2)
	}
	if a, b := sentBytes(t, out1), sentBytes(t, out2); a == 0 || b > a {
		t.Errorf("the second build sent %.0f bytes of context, the first %.0f", b, a)
	}
	img := readImage(t, second.Layout, second.Digest)
	if fileInImage(t, img, "/app/licenses/mod1/LICENSE") == "" {
		t.Fatalf("the image lacks the license tree")
	}
	// The RUN lists the context as COPY . brought it.
	if got := fileInImage(t, img, "/app/context-listing"); !strings.Contains(got, "./licenses/mod1/LICENSE") || strings.Contains(got, "oci") {
		t.Errorf("the context as the build saw it:\n%s", got)
	}
	_ = first

	// The layout cannot be the context itself.
	bad := s
	bad.Layout = dir
	var p progress
	if _, err := build.Build(context.Background(), bad, p.opts()...); fail.ClassOf(err) != fail.Usage || !strings.Contains(err.Error(), "outside the build context") {
		t.Errorf("layout = context: %v", err)
	}
}

// TestNoCacheCounts: under --no-cache no step is counted cached, though
// BuildKit reuses WORKDIR's directory creation and reports it CACHED.
func TestNoCacheCounts(t *testing.T) {
	testenv.NeedStack(t)
	s := plannerShapedSpec(t, plannerShapedSource(t))
	mustBuild(t, s)
	s.NoCache = true
	res, out := mustBuild(t, s)
	if res.Cached != 0 || res.Steps == 0 {
		t.Errorf("--no-cache: %d of %d steps cached:\n%s", res.Cached, res.Steps, out)
	}
}

// TestFailedBuildLeavesNoLayout: a failed build into a new layout leaves no
// directory there; one into an existing layout leaves it as it was.
func TestFailedBuildLeavesNoLayout(t *testing.T) {
	testenv.NeedStack(t)
	dir := writeFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo failing && false\n"})
	s := spec(t, dir)
	s.Layout = filepath.Join(t.TempDir(), "new", "oci")
	var p progress
	if _, err := build.Build(context.Background(), s, p.opts()...); fail.ClassOf(err) != fail.Build {
		t.Fatalf("the failing build: %v", err)
	}
	if _, err := os.Stat(s.Layout); !os.IsNotExist(err) {
		t.Errorf("the failed build left %s: %v", s.Layout, err)
	}

	ok := writeFiles(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY f /f\n", "f": "x"})
	good := spec(t, ok)
	res, _ := mustBuild(t, good)
	before, err := os.ReadFile(filepath.Join(good.Layout, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	s.Layout = good.Layout
	if _, err := build.Build(context.Background(), s, p.opts()...); err == nil {
		t.Fatal("the failing build succeeded")
	}
	after, err := os.ReadFile(filepath.Join(good.Layout, "index.json"))
	if err != nil || string(after) != string(before) {
		t.Errorf("the failed build changed the existing layout's index.json: %v", err)
	}
	readImage(t, good.Layout, res.Digest)
}

// TestLayoutLocked: a build waits while another process holds the layout
// (two builds of one image name share its default layout), and goes on once
// it is free.
func TestLayoutLocked(t *testing.T) {
	testenv.NeedStack(t)
	dir := writeFiles(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY f /f\n", "f": "x"})
	s := spec(t, dir)
	if err := os.MkdirAll(s.Layout, 0o755); err != nil {
		t.Fatal(err)
	}
	other := flock.New(filepath.Join(s.Layout, ".idopipe-build.lock"))
	if err := other.Lock(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var p progress
	if _, err := build.Build(ctx, s, p.opts()...); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("build into a locked layout: %v, want it to wait until cancelled", err)
	}
	if err := other.Unlock(); err != nil {
		t.Fatal(err)
	}
	res, _ := mustBuild(t, s)
	readImage(t, s.Layout, res.Digest)
}

// TestCLIDefaultLayout: without --oci-layout, build writes the image to the
// user cache directory keyed by the image name, not into the build
// context, and push finds it there.
func TestCLIDefaultLayout(t *testing.T) {
	testenv.NeedStack(t)
	dir := writeFiles(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY f /f\n", "f": "x"})
	cache := t.TempDir()
	env := map[string]string{"XDG_CACHE_HOME": cache}
	r := cli(t, env, "build", "--source", dir, "--image-name", "default-layout", "--progress", "quiet", "-o", "json")
	if r.code != 0 {
		t.Fatalf("build: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	res := buildResult(t, r)
	if want := filepath.Join(cache, "idopipe", "oci", "default-layout"); res.Layout != want {
		t.Errorf("layout %s, want %s", res.Layout, want)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 2 {
		t.Errorf("the build context holds %v (%v), want only Dockerfile and f", entries, err)
	}
	r = cli(t, env, "push", "--image-name", "default-layout", "--registry", stack.Registry.Host, "--registry-ca", stack.Registry.CAFile,
		"--owner", "default-layout", "--progress", "quiet")
	if r.code != 0 || !strings.Contains(r.stdout+r.stderr, res.Digest) {
		t.Errorf("push from the default layout: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}
