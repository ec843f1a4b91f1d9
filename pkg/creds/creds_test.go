package creds

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idopipe/idopipe/pkg/fail"
)

const tok = "ghp_secretTOKENvalue123"

func env(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestResolvePrecedence(t *testing.T) {
	dir := t.TempDir()
	flagFile := writeFile(t, dir, "flag-token", "from-flag-file\n", 0o600)
	writeFile(t, dir, DefaultTokenFile, "from-default-file\r\n", 0o600)
	cases := []struct {
		name       string
		o          Options
		want, from string
	}{
		{"flag file beats env", Options{TokenFile: flagFile, Env: env("GITHUB_TOKEN", "from-env", "GITHUB_ACTOR", "a")}, "from-flag-file", "--token-file " + flagFile},
		{"GITHUB_TOKEN beats GHCR_TOKEN and the file", Options{Dir: dir, Env: env("GITHUB_TOKEN", "gh", "GHCR_TOKEN", "ghcr", "GITHUB_ACTOR", "a")}, "gh", "$GITHUB_TOKEN"},
		{"GHCR_TOKEN beats the file", Options{Dir: dir, Env: env("GHCR_TOKEN", "ghcr", "GITHUB_ACTOR", "a")}, "ghcr", "$GHCR_TOKEN"},
		{"default file, CRLF trimmed", Options{Dir: dir, Username: "u"}, "from-default-file", filepath.Join(dir, DefaultTokenFile)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Resolve(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if c.Token.Reveal() != tc.want || c.Source != tc.from {
				t.Errorf("token from %q, want %q from %q", c.Source, tc.want, tc.from)
			}
		})
	}
	c, err := Resolve(Options{Username: "flag-user", Env: env("GITHUB_TOKEN", "t", "GITHUB_ACTOR", "actor")})
	if err != nil || c.Username != "flag-user" {
		t.Errorf("--username should beat $GITHUB_ACTOR: %q %v", c.Username, err)
	}
}

func TestResolveErrors(t *testing.T) {
	dir := t.TempDir()
	empty := writeFile(t, dir, "empty", "\n", 0o600)
	spaced := writeFile(t, dir, "spaced", tok+" \n", 0o600)
	cases := []struct {
		name string
		o    Options
		want string
	}{
		{"nothing", Options{Dir: dir, Env: env("GITHUB_ACTOR", "a")}, "no registry token found"},
		{"no username", Options{Env: env("GITHUB_TOKEN", tok)}, "no registry username"},
		{"empty file", Options{TokenFile: empty, Username: "u"}, empty + " is empty"},
		{"trailing space", Options{TokenFile: spaced, Username: "u"}, "holds whitespace"},
		{"missing file", Options{TokenFile: filepath.Join(dir, "nope"), Username: "u"}, "does not exist"},
		{"directory", Options{TokenFile: dir, Username: "u"}, "is a directory"},
		{"env with newline", Options{Env: env("GITHUB_TOKEN", tok+"\n", "GITHUB_ACTOR", "a")}, "$GITHUB_TOKEN holds whitespace"},
	}
	if os.Geteuid() != 0 { // root reads any file
		unreadable := writeFile(t, dir, "unreadable", tok, 0o000)
		cases = append(cases, struct {
			name string
			o    Options
			want string
		}{"unreadable", Options{TokenFile: unreadable, Username: "u"}, "cannot read token file"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Resolve(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if fail.ClassOf(err) != fail.Credentials {
				t.Errorf("class %s", fail.ClassOf(err))
			}
			if strings.Contains(err.Error(), tok) {
				t.Error("error message carries the token")
			}
		})
	}
}

func TestWarnsAboutReadableTokenFile(t *testing.T) {
	dir := t.TempDir()
	open := writeFile(t, dir, "open", tok, 0o644)
	var warnings []string
	if _, err := Resolve(Options{TokenFile: open, Username: "u", Warn: func(s string) { warnings = append(warnings, s) }}); err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "chmod 600") {
		t.Errorf("warnings %v", warnings)
	}
	closed := writeFile(t, dir, "closed", tok, 0o600)
	warnings = nil
	if _, err := Resolve(Options{TokenFile: closed, Username: "u", Warn: func(s string) { warnings = append(warnings, s) }}); err != nil || len(warnings) != 0 {
		t.Errorf("mode 600 warned: %v %v", warnings, err)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := NewSecret(tok)
	c := Credentials{Username: "u", Token: s, Source: "$GITHUB_TOKEN"}
	b, _ := json.Marshal(c)
	for _, out := range []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q %x", s, c, c, s, s, s), string(b), s.String(),
	} {
		if strings.Contains(out, tok) {
			t.Errorf("token printed: %s", out)
		}
	}
	if got := s.Redact("auth failed for " + tok + "!"); got != "auth failed for [redacted]!" {
		t.Errorf("Redact: %q", got)
	}
	if s.Reveal() != tok {
		t.Error("Reveal lost the token")
	}
}

// TestFineGrainedToken: a fine-grained personal access token is refused
// wherever it comes from, naming its source and the classic token to use
// instead, and its value is not in the message.
func TestFineGrainedToken(t *testing.T) {
	const fine = FineGrainedPrefix + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"
	dir := t.TempDir()
	file := writeFile(t, dir, "token", fine+"\n", 0o600)
	for _, o := range []Options{
		{Env: env("GITHUB_TOKEN", fine, "GITHUB_ACTOR", "a")},
		{Env: env("GHCR_TOKEN", fine), Username: "a"},
		{TokenFile: file, Username: "a"},
		{TokenFile: file}, // no username: the token's kind is the first problem
	} {
		_, err := Resolve(o)
		if fail.ClassOf(err) != fail.Credentials {
			t.Fatalf("%+v: %v, want a credentials error", o, err)
		}
		msg := err.Error()
		for _, want := range []string{"fine-grained personal access token (github_pat_…)", "classic token (ghp_…) with write:packages", "packages: write"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%q does not say %q", msg, want)
			}
		}
		if strings.Contains(msg, fine) || strings.Contains(msg, "\n") {
			t.Errorf("not one line without the token: %q", msg)
		}
	}
	// Classic, Actions and OAuth tokens pass.
	for _, ok := range []string{"ghp_classic", "ghs_actions", "gho_oauth"} {
		if _, err := Resolve(Options{Env: env("GITHUB_TOKEN", ok, "GITHUB_ACTOR", "a")}); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}
