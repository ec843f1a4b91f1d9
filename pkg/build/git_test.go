package build_test

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/build"
)

// TestGitContext: a git URL context (http://…/repo.git#ref) is fetched by
// BuildKit itself from a git server on loopback, the Dockerfile read from
// the repository; the revision label names the commit the ref points at,
// and with an epoch the build is reproducible.
func TestGitContext(t *testing.T) {
	testenv.NeedStack(t)
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	work := writeFiles(t, map[string]string{
		"Dockerfile": "FROM scratch\nCOPY app.txt /app.txt\n", "app.txt": "from git\n",
		"sub/Dockerfile.alt": "FROM scratch\nCOPY app.txt /alt.txt\n",
	})
	const when = 1690000000
	gitRun(t, work, nil, "init", "-q", "-b", "main")
	gitRun(t, work, nil, "add", ".")
	env := []string{"GIT_AUTHOR_DATE=@" + strconv.Itoa(when) + " +0000", "GIT_COMMITTER_DATE=@" + strconv.Itoa(when) + " +0000"}
	gitRun(t, work, env, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "fixture")
	gitRun(t, work, nil, "tag", "v0.4.0")
	commit := gitRun(t, work, nil, "rev-parse", "HEAD")
	root := t.TempDir()
	gitRun(t, root, nil, "clone", "-q", "--bare", work, filepath.Join(root, "ido.git"))

	srv, err := testenv.StartGitServer(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)

	var digests []string
	for _, tc := range []struct{ ref, dockerfile, file string }{
		{"#main", "", "/app.txt"},
		{"#v0.4.0", "", "/app.txt"},
		{"#main", "sub/Dockerfile.alt", "/alt.txt"},
	} {
		s := spec(t, t.TempDir())
		s.Context = srv.URL + "/ido.git" + tc.ref
		s.Dockerfile = tc.dockerfile
		s.SourceDateEpoch = strconv.Itoa(when)
		res, _ := mustBuild(t, s)
		img := readImage(t, res.Layout, res.Digest)
		if got := fileInImage(t, img, tc.file); got != "from git\n" {
			t.Errorf("%s: %s holds %q", tc.ref, tc.file, got)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if got := cf.Config.Labels[build.LabelRevision]; got != commit {
			t.Errorf("%s: revision label %q, want %s", tc.ref, got, commit)
		}
		if got := cf.Config.Labels[build.LabelSource]; got != srv.URL+"/ido" {
			t.Errorf("%s: source label %q", tc.ref, got)
		}
		if tc.dockerfile == "" {
			digests = append(digests, res.Digest)
		}
	}
	if digests[0] != digests[1] {
		t.Errorf("the branch and the tag on one commit gave %s and %s", digests[0], digests[1])
	}
}
