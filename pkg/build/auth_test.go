package build_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/fail"
)

// noDockerConfig points the docker config at an empty directory, so that
// only the credentials idopipe is given can reach the registry.
func noDockerConfig(t *testing.T) {
	t.Helper()
	t.Setenv("DOCKER_CONFIG", t.TempDir())
}

// TestPrivateBaseImage: a base image on the stack's htpasswd registry is
// pulled with the credentials idopipe is given, through the session, with
// no docker config; without them, or with a wrong token, the error names
// the registry, what it answered and which credentials it was given. Each
// build runs on a fresh buildkitd, so that no earlier pull is reused.
func TestPrivateBaseImage(t *testing.T) {
	testenv.NeedStack(t)
	noDockerConfig(t)
	ref := pushImage(t, markerImage(t, "private base\n"), "private/base:1")
	host := stack.Registry.Host
	dir := writeFiles(t, map[string]string{"Dockerfile": "FROM " + ref + " AS base\nFROM scratch\nCOPY --from=base /marker /marker\n"})

	good := build.StaticCredentials{Hosts: []string{host}, Username: stack.Registry.Username, Secret: stack.Registry.Password, Source: "the test's token"}
	var p progress
	res, err := build.Build(context.Background(), spec(t, dir), append(p.opts(), freshPruned(t), build.WithCredentials(good))...)
	if err != nil {
		t.Fatalf("build with credentials: %v\n%s", err, p.String())
	}
	if got := fileInImage(t, readImage(t, res.Layout, res.Digest), "/marker"); got != "private base\n" {
		t.Errorf("/marker holds %q", got)
	}

	// The same image as a docker-image:// named context.
	named := writeFiles(t, map[string]string{"Dockerfile": "FROM golang:1.24.6 AS base\nFROM scratch\nCOPY --from=base /marker /marker\n"})
	s := spec(t, named)
	s.Contexts = map[string]string{"golang:1.24.6": "docker-image://" + ref}
	p = progress{}
	if _, err := build.Build(context.Background(), s, append(p.opts(), freshPruned(t), build.WithCredentials(good))...); err != nil {
		t.Fatalf("docker-image:// context with credentials: %v\n%s", err, p.String())
	}

	for _, tc := range []struct {
		name  string
		creds build.Credentials
		want  []string
	}{
		{"no credentials", nil, []string{"registry " + host + " answered 401 Unauthorized", "no credentials for it", "docker login " + host}},
		{"credentials for another host", build.StaticCredentials{Hosts: []string{"ghcr.io"}, Username: "u", Secret: "s"},
			[]string{"registry " + host + " answered 401 Unauthorized", "no credentials for it"}},
		{"wrong token", build.StaticCredentials{Hosts: []string{host}, Username: stack.Registry.Username, Secret: "wrong", Source: "the token from $GITHUB_TOKEN"},
			[]string{"registry " + host + ` answered "denied: denied" at its token endpoint to the token from $GITHUB_TOKEN`, "check the token from $GITHUB_TOKEN: it must be valid for " + host}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := []build.Option{freshPruned(t)}
			if tc.creds != nil {
				opts = append(opts, build.WithCredentials(tc.creds))
			}
			var p progress
			s := spec(t, dir)
			_, err := build.Build(context.Background(), s, append(p.opts(), opts...)...)
			if fail.ClassOf(err) != fail.Credentials {
				t.Fatalf("class %v, want credentials: %v\n%s", fail.ClassOf(err), err, p.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if strings.Contains(err.Error(), "Dockerfile") {
				t.Errorf("the error blames the Dockerfile: %v", err)
			}
			if strings.Contains(err.Error(), "wrong") || strings.Contains(p.String(), "wrong") {
				t.Errorf("the token is in the error or the progress")
			}
			t.Logf("%v", err)
		})
	}
}

// TestCLIPrivateBaseImage: `idopipe build` pulls a private base image from
// the registry it pushes to (--registry) with the push token from
// $GITHUB_TOKEN, with no docker config; a wrong token is reported as the
// token from $GITHUB_TOKEN, without asking to set variables that are set.
func TestCLIPrivateBaseImage(t *testing.T) {
	testenv.NeedStack(t)
	noDockerConfig(t)
	ref := pushImage(t, markerImage(t, "private base\n"), "private/cli-base:1")
	dir := writeFiles(t, map[string]string{"Dockerfile": "FROM " + ref + " AS base\nFROM scratch\nCOPY --from=base /marker /marker\n"})
	fresh := freshBuildKit(t)
	layoutDir := filepath.Join(t.TempDir(), "oci")
	args := []string{"build", "--source", dir, "--registry", stack.Registry.Host, "--oci-layout", layoutDir, "--progress", "plain", "-o", "json"}
	r := cli(t, map[string]string{"BUILDKIT_HOST": fresh.Address}, args...)
	if r.code != 0 {
		t.Fatalf("build: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	res := buildResult(t, r)
	if got := fileInImage(t, readImage(t, res.Layout, res.Digest), "/marker"); got != "private base\n" {
		t.Errorf("/marker holds %q", got)
	}

	fresh = freshBuildKit(t)
	r = cli(t, map[string]string{"BUILDKIT_HOST": fresh.Address, "GITHUB_TOKEN": "not-the-token"}, args...)
	if r.code != int(fail.Credentials) {
		t.Fatalf("wrong token: exit %d, want %d\n%s", r.code, fail.Credentials, r.stderr)
	}
	for _, w := range []string{`answered "denied: denied" at its token endpoint to the token from $GITHUB_TOKEN (user ` + stack.Registry.Username + ")", stack.Registry.Host} {
		if !strings.Contains(r.stdout+r.stderr, w) {
			t.Errorf("output lacks %q:\n%s\n%s", w, r.stdout, r.stderr)
		}
	}
	if strings.Contains(r.stdout+r.stderr, "set $GITHUB_ACTOR") || strings.Contains(r.stdout+r.stderr, "set $GITHUB_TOKEN") {
		t.Errorf("the hint asks for variables that are set:\n%s", r.stdout+r.stderr)
	}
}
