package build_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/fail"
)

// TestBuildErrors: each bad input fails with one line naming what and
// where, in its class.
func TestBuildErrors(t *testing.T) {
	testenv.NeedStack(t)
	syntax := writeFiles(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY f /f\nFORM scratch\n", "f": "x"})
	failingRun := writeFiles(t, map[string]string{"Dockerfile": `FROM busybox
RUN echo preparing && echo line-two && echo "the last words" && false
`})
	missingFile := writeFiles(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY nothere /x\n"})
	ok := writeFiles(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY f /f\n", "f": "x"})
	noHost := writeFiles(t, map[string]string{"Dockerfile": "FROM nothere.invalid/base:1 AS base\nFROM scratch\nCOPY --from=base /f /f\n"})
	noHostCopy := writeFiles(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY --from=nothere.invalid/base:1 /f /f\n"})
	noImage := writeFiles(t, map[string]string{"Dockerfile": "FROM " + stack.Registry.Host + "/private/missing:1\nRUN true\n"})
	regCreds := build.WithCredentials(build.StaticCredentials{Hosts: []string{stack.Registry.Host}, Username: stack.Registry.Username, Secret: stack.Registry.Password})

	cases := []struct {
		name  string
		dir   string
		edit  func(*build.Spec)
		opts  []build.Option
		class fail.Class
		want  []string
	}{
		{name: "Dockerfile syntax error", dir: syntax, class: fail.Build,
			want: []string{filepath.Join(syntax, "Dockerfile") + ":3", "unknown instruction", "FORM", "fix the Dockerfile"}},
		{name: "failing RUN", dir: failingRun, class: fail.Build,
			want: []string{"failed at step", "RUN echo preparing", "exit code: 1", "last output: preparing | line-two | the last words", "Dockerfile:2"}},
		{name: "COPY of a missing file", dir: missingFile, class: fail.Build,
			want: []string{"nothere", "not found"}},
		{name: "base image on a host that does not exist", dir: noHost, class: fail.Registry,
			want: []string{"cannot get image nothere.invalid/base:1 from registry nothere.invalid", "reachable"}},
		{name: "COPY --from an image on a host that does not exist", dir: noHostCopy, class: fail.Registry,
			want: []string{"cannot get image nothere.invalid/base:1 from registry nothere.invalid", "reachable"}},
		{name: "base image not in the registry", dir: noImage, opts: []build.Option{regCreds}, class: fail.NotFound,
			want: []string{"cannot get image " + stack.Registry.Host + "/private/missing:1 from registry " + stack.Registry.Host, "not found"}},
		{name: "unknown platform", dir: ok, edit: func(s *build.Spec) { s.Platforms = []string{"linux/amd64,linux/amd65"} }, class: fail.Usage,
			want: []string{`unknown platform "linux/amd65"`, "--platform"}},
		{name: "missing build context", dir: ok, edit: func(s *build.Spec) { s.Context = filepath.Join(ok, "nope") }, class: fail.Build,
			want: []string{"build context", "is not a directory", "--source"}},
		{name: "unreachable daemon", dir: ok, opts: []build.Option{build.WithAddress("unix://" + filepath.Join(t.TempDir(), "none.sock"))}, class: fail.Daemon,
			want: []string{"cannot reach BuildKit at unix://", "--buildkit-host"}},
		{name: "address without scheme", dir: ok, opts: []build.Option{build.WithAddress("/run/buildkit.sock")}, class: fail.Usage,
			want: []string{"no scheme", "unix://"}},
		{name: "bad epoch", dir: ok, edit: func(s *build.Spec) { s.SourceDateEpoch = "yesterday" }, class: fail.Usage,
			want: []string{"SOURCE_DATE_EPOCH", "--source-date-epoch"}},
		{name: "bad provenance", dir: ok, edit: func(s *build.Spec) { s.Provenance = "full" }, class: fail.Usage,
			want: []string{`provenance mode "full"`, "min, max or false"}},
		{name: "bad cache", dir: ok, edit: func(s *build.Spec) { s.CacheTo = []string{"type=s3,bucket=x"} }, class: fail.Usage,
			want: []string{"--cache-to", `"s3"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := spec(t, tc.dir)
			if tc.edit != nil {
				tc.edit(&s)
			}
			var p progress
			_, err := build.Build(context.Background(), s, append(p.opts(), tc.opts...)...)
			if err == nil {
				t.Fatal("the build succeeded")
			}
			var fe *fail.Error
			if !errors.As(err, &fe) || fe.Class != tc.class {
				t.Fatalf("class %v, want %v: %v", fail.ClassOf(err), tc.class, err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("not one line: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			if (tc.class == fail.Registry || tc.class == fail.NotFound) && strings.Contains(msg, "Dockerfile") {
				t.Errorf("an image that cannot be got is blamed on the Dockerfile:\n%s", msg)
			}
			t.Logf("%s", msg)
		})
	}
}
