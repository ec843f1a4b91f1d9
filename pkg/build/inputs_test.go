package build_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/buildkit/util/progress/progressui"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/fail"
)

// TestLabels: --label values reach the image config; the OCI version label
// comes from the version unless a label overrides it; outside a git
// checkout there is no source or revision label.
func TestLabels(t *testing.T) {
	testenv.NeedStack(t)
	dir := writeFiles(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY f /f\n", "f": "x"})
	s := spec(t, dir)
	s.Labels = map[string]string{"com.example.team": "ido, planner", build.LabelVersion: "v1-custom"}
	s.SourceDateEpoch = "1700000000"
	res, _ := mustBuild(t, s)
	cf, err := readImage(t, res.Layout, res.Digest).ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	l := cf.Config.Labels
	if l["com.example.team"] != "ido, planner" || l[build.LabelVersion] != "v1-custom" || l[build.LabelCreated] != "2023-11-14T22:13:20Z" {
		t.Errorf("labels %v", l)
	}
	if _, ok := l[build.LabelRevision]; ok {
		t.Errorf("a revision label outside git: %v", l)
	}
}

const secretDockerfile = `FROM busybox
COPY expected /expected
RUN --mount=type=secret,id=token,required=true test "$(cat /run/secrets/token)" = "$(cat /expected)" && echo secret ok
RUN --mount=type=secret,id=envtok,required=true test "$(cat /run/secrets/envtok)" = "from-env"
`

// TestSecrets: --secret id=…,src=FILE and id=…,env=VAR reach RUN
// --mount=type=secret, and never the image; a wrong value fails the RUN.
func TestSecrets(t *testing.T) {
	testenv.NeedStack(t)
	dir := writeFiles(t, map[string]string{"Dockerfile": secretDockerfile, "token": "s3cret", "expected": "s3cret", "wrong": "nope"})
	env := map[string]string{"IDO_TOKEN": "from-env"}
	s := spec(t, dir)
	s.Secrets = []string{"id=token,src=" + filepath.Join(dir, "token"), "id=envtok,env=IDO_TOKEN"}
	res, _ := mustBuild(t, s, build.WithEnv(env))
	img := readImage(t, res.Layout, res.Digest)
	if got := fileInImage(t, img, "/run/secrets/token"); got != "" {
		t.Errorf("the secret is in the image: %q", got)
	}

	// Secrets are not part of BuildKit's cache key: without --no-cache the
	// step above would be reused.
	s = spec(t, dir)
	s.NoCache = true
	s.Secrets = []string{"id=token,src=" + filepath.Join(dir, "wrong"), "id=envtok,env=IDO_TOKEN"}
	var p progress
	_, err := build.Build(context.Background(), s, append(p.opts(), build.WithEnv(env))...)
	if fail.ClassOf(err) != fail.Build || !strings.Contains(err.Error(), "RUN --mount=type=secret,id=token") {
		t.Fatalf("wrong secret: got %v, want the failing RUN step named", err)
	}
	if strings.Contains(p.String(), "s3cret") || strings.Contains(p.String(), "nope") {
		t.Errorf("a secret value is in BuildKit's output")
	}

	for _, bad := range [][]string{
		{"id=token,src=" + filepath.Join(dir, "missing")},
		{"src=" + filepath.Join(dir, "token")},
		{"id=token,src=" + filepath.Join(dir, "token"), "id=token,env=X"},
		{"id=token,bogus=1"},
	} {
		s := spec(t, dir)
		s.Secrets = bad
		err := s.Validate()
		var fe *fail.Error
		if !errors.As(err, &fe) || fe.Class != fail.Usage || !strings.Contains(err.Error(), "secret") {
			t.Errorf("%v: got %v, want a usage error about the secret", bad, err)
		}
	}
}

// TestProgressModes: auto is plain off a terminal, tty needs one, rawjson
// prints BuildKit's status as JSON lines, quiet prints nothing.
func TestProgressModes(t *testing.T) {
	testenv.NeedStack(t)
	var buf strings.Builder
	if m, err := build.DisplayMode(&buf, "auto"); err != nil || m != progressui.PlainMode {
		t.Errorf("auto off a terminal: %v %v, want plain", m, err)
	}
	if _, err := build.DisplayMode(&buf, "tty"); fail.ClassOf(err) != fail.Usage {
		t.Errorf("tty off a terminal: %v, want a usage error", err)
	}
	if _, err := build.DisplayMode(&buf, "fancy"); fail.ClassOf(err) != fail.Usage || !strings.Contains(err.Error(), "rawjson") {
		t.Errorf("unknown mode: %v", err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	if m, _ := build.DisplayMode(devnull, "auto"); m != progressui.PlainMode {
		t.Errorf("auto on /dev/null: %v, want plain", m)
	}

	dir := writeFiles(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY f /f\n", "f": "x"})
	for _, mode := range []string{"rawjson", "quiet", "plain"} {
		var out strings.Builder
		if _, err := build.Build(context.Background(), spec(t, dir), build.WithAddress(stack.BuildKit.Address), build.WithProgress(&out, mode)); err != nil {
			t.Fatal(err)
		}
		switch mode {
		case "quiet":
			if out.Len() != 0 {
				t.Errorf("quiet printed %q", out.String())
			}
		case "plain":
			if !strings.Contains(out.String(), "COPY f /f") {
				t.Errorf("plain output lacks the step: %q", out.String())
			}
		case "rawjson":
			sc := bufio.NewScanner(strings.NewReader(out.String()))
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			n := 0
			for sc.Scan() {
				var st struct{ Vertexes []struct{ Name string } }
				if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
					t.Fatalf("rawjson line %q: %v", sc.Text(), err)
				}
				n++
			}
			if n == 0 {
				t.Errorf("rawjson printed nothing")
			}
		}
	}
}

// TestNamedDirContext: --build-context NAME=DIR serves a local directory
// to COPY --from=NAME.
func TestNamedDirContext(t *testing.T) {
	testenv.NeedStack(t)
	dir := writeFiles(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY --from=extra hello /hello\n"})
	extra := writeFiles(t, map[string]string{"hello": "from the named context\n"})
	s := spec(t, dir)
	s.Contexts["extra"] = extra
	res, _ := mustBuild(t, s)
	if got := fileInImage(t, readImage(t, res.Layout, res.Digest), "/hello"); got != "from the named context\n" {
		t.Errorf("/hello holds %q", got)
	}
}
