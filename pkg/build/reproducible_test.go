package build_test

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/build"
)

// reproDockerfile has a RUN step, whose layer holds files with the build's
// wall-clock times unless they are rewritten.
const reproDockerfile = `FROM busybox AS build
COPY app.txt /src/app.txt
RUN mkdir -p /out && cp /src/app.txt /out/app.txt && echo built > /out/stamp

FROM scratch
COPY --from=build /out/ /app/
`

// TestReproducibleWithEpoch: two --no-cache builds of the same source with
// the same SOURCE_DATE_EPOCH, into two layouts, give the same digest.
func TestReproducibleWithEpoch(t *testing.T) {
	testenv.NeedStack(t)
	t.Parallel()
	dir := writeFiles(t, map[string]string{"Dockerfile": reproDockerfile, "app.txt": "app\n"})
	digests := map[string]bool{}
	for range 2 {
		s := spec(t, dir)
		s.NoCache = true
		s.SourceDateEpoch = "1700000000"
		res, _ := mustBuild(t, s)
		if res.SourceDateEpoch != "1700000000" {
			t.Errorf("result epoch %q", res.SourceDateEpoch)
		}
		digests[res.Digest] = true
		// A file's mtime is clamped to the epoch in the exported layer.
		img := readImage(t, res.Layout, res.Digest)
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if !cf.Created.Time.Equal(time.Unix(1700000000, 0)) {
			t.Errorf("config created %s, want the epoch", cf.Created.Time)
		}
		// Let the wall clock move on between the builds.
		time.Sleep(1100 * time.Millisecond)
	}
	if len(digests) != 1 {
		t.Fatalf("two clean builds gave different digests: %v", digests)
	}

	// The control: without an epoch the same two builds differ (the
	// config's created time is the wall clock), so the test above is not
	// vacuous.
	control := map[string]bool{}
	for range 2 {
		s := spec(t, dir)
		s.NoCache = true
		s.SourceDateEpoch = build.EpochNone
		res, _ := mustBuild(t, s)
		control[res.Digest] = true
		time.Sleep(1100 * time.Millisecond)
	}
	if len(control) != 2 {
		t.Errorf("builds without SOURCE_DATE_EPOCH gave one digest; the reproducibility test proves nothing")
	}
}

// TestReproducibleFromGit: in a git checkout the last commit's time is the
// epoch, and the OCI labels name the commit; two clean builds agree.
func TestReproducibleFromGit(t *testing.T) {
	testenv.NeedStack(t)
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := writeFiles(t, map[string]string{"Dockerfile": reproDockerfile, "app.txt": "app\n"})
	const when = 1690000000
	gitRun(t, dir, nil, "init", "-q")
	gitRun(t, dir, nil, "remote", "add", "origin", "git@github.com:intel/intent-driven-orchestration.git")
	gitRun(t, dir, nil, "add", ".")
	env := []string{"GIT_AUTHOR_DATE=@" + strconv.Itoa(when) + " +0000", "GIT_COMMITTER_DATE=@" + strconv.Itoa(when) + " +0000"}
	gitRun(t, dir, env, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "fixture")
	commit := gitRun(t, dir, nil, "rev-parse", "HEAD")

	var first build.Result
	for i := range 2 {
		s := spec(t, dir)
		s.NoCache = true
		res, _ := mustBuild(t, s)
		if res.SourceDateEpoch != strconv.Itoa(when) {
			t.Fatalf("epoch %q, want the commit time %d", res.SourceDateEpoch, when)
		}
		if i == 0 {
			first = res
			time.Sleep(1100 * time.Millisecond)
			continue
		}
		if res.Digest != first.Digest {
			t.Fatalf("two clean builds of one commit gave %s and %s", first.Digest, res.Digest)
		}
	}
	cf, err := readImage(t, first.Layout, first.Digest).ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		build.LabelSource:   "https://github.com/intel/intent-driven-orchestration",
		build.LabelRevision: commit,
		build.LabelVersion:  "1.0.0",
		build.LabelCreated:  time.Unix(when, 0).UTC().Format(time.RFC3339),
	}
	for k, v := range want {
		if got := cf.Config.Labels[k]; got != v {
			t.Errorf("label %s = %q, want %q", k, got, v)
		}
	}
}

func gitRun(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), "git", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1"), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(trimNL(out))
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
