package options

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/registry"
)

func env(kv ...string) Getenv {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// usage asserts err is a usage error (exit 2) whose message holds want.
func usage(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want a usage error with %q", want)
	}
	if fail.Code(err) != int(fail.Usage) {
		t.Errorf("exit %d (%v), want %d", fail.Code(err), err, fail.Usage)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}

func parse(t *testing.T, add func(*pflag.FlagSet), args ...string) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	add(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
}

func TestGlobalValidate(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-q", "-v"}, "--quiet and --verbose contradict"},
		{[]string{"-o", "yaml"}, `this command has no yaml output`},
		{[]string{"-o", "xml"}, `unknown output format "xml"`},
	} {
		var g GlobalOptions
		parse(t, g.AddFlags, tc.args...)
		usage(t, g.Validate(), tc.want)
	}
	var g GlobalOptions
	parse(t, g.AddFlags, "-o", "json")
	if err := g.Validate(); err != nil || !g.JSON() {
		t.Fatalf("-o json: %v", err)
	}
}

func TestGlobalComplete(t *testing.T) {
	var g GlobalOptions
	g.Complete(env("HOME", "/home/u", "GITHUB_ACTIONS", "true", "GITHUB_OUTPUT", "/o", "GITHUB_STEP_SUMMARY", "/s", "GITHUB_RUN_ID", "7"))
	if g.CacheDir != "/home/u/.cache" || g.Actions != (Actions{Enabled: true, Output: "/o", Summary: "/s", RunID: "7"}) {
		t.Fatalf("%+v", g)
	}
	if d := CacheDir(env("HOME", "/home/u", "XDG_CACHE_HOME", "/xdg")); d != "/xdg" {
		t.Errorf("XDG_CACHE_HOME: %q", d)
	}
	if d := CacheDir(env()); d != "" {
		t.Errorf("no HOME: %q", d)
	}
}

func TestImageValidate(t *testing.T) {
	o := ImageOptions{Name: "planner", Version: "0.4/0"}
	usage(t, o.Validate(), `--version "0.4/0" is not a valid image tag`)
	o = ImageOptions{Version: "1"}
	usage(t, o.Validate(), "no image name")
	var d ImageOptions
	parse(t, d.AddNameFlag)
	if err := d.Validate(); err != nil {
		t.Fatalf("deploy's image names no version: %v", err)
	}
}

func selfSignedCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRegistryValidate(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--registry-ca", "/nonexistent/ca.pem"}, "cannot read registry CA /nonexistent/ca.pem"},
		{[]string{"--registry-ca", notPEM}, "holds no PEM certificate"},
		{[]string{"--jobs", "0"}, "--jobs 0"},
		{[]string{"--jobs", "-3"}, "--jobs -3"},
	} {
		var o RegistryOptions
		parse(t, func(fs *pflag.FlagSet) { o.AddFlags(fs, RegistryFlags{Jobs: true}) }, tc.args...)
		usage(t, o.Validate(), tc.want)
	}
	// A good CA and --jobs reach the registry access.
	ca := selfSignedCA(t)
	var o RegistryOptions
	parse(t, func(fs *pflag.FlagSet) { o.AddFlags(fs, RegistryFlags{Jobs: true}) }, "--registry-ca", ca, "--jobs", "2")
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if a := o.Access(nil); a.CAFile != ca || a.Jobs != 2 {
		t.Errorf("access %+v", a)
	}
	// Without --jobs (a command that has none) Jobs stays 0: the library default.
	var p RegistryOptions
	parse(t, func(fs *pflag.FlagSet) { p.AddFlags(fs, RegistryFlags{Target: true}) })
	if err := p.Validate(); err != nil || p.Jobs != 0 {
		t.Fatalf("no --jobs: %v %d", err, p.Jobs)
	}
}

func TestRegistryComplete(t *testing.T) {
	o := RegistryOptions{}
	o.Complete(env("GITHUB_REPOSITORY_OWNER", "Org", "GITHUB_TOKEN", "tok", "GITHUB_ACTOR", "me", "OTHER", "x"))
	if o.Owner != "Org" {
		t.Errorf("owner %q", o.Owner)
	}
	if len(o.Env) != 2 || o.Env["GITHUB_TOKEN"] != "tok" || o.Env["GITHUB_ACTOR"] != "me" {
		t.Errorf("env %v: want only the credentials' variables", o.Env)
	}
	c, err := o.Credentials("", nil)
	if err != nil || c.Username != "me" || c.Source != "$GITHUB_TOKEN" {
		t.Fatalf("credentials %+v %v", c, err)
	}
	o = RegistryOptions{Owner: "flag"}
	o.Complete(env("GITHUB_REPOSITORY_OWNER", "Org"))
	if o.Owner != "flag" {
		t.Errorf("--owner lost to the environment: %q", o.Owner)
	}
}

func TestBuildKitOptions(t *testing.T) {
	var o BuildKitOptions
	parse(t, o.AddFlags, "--buildkit-tls-ca", "ca.pem")
	o.Complete(env("BUILDKIT_HOST", "unix:///run/b.sock", "PATH", "/bin"))
	if o.Host != "unix:///run/b.sock" || o.Path != "/bin" || o.Managed() {
		t.Fatalf("%+v", o)
	}
	usage(t, o.Validate(), "--buildkit-tls-* apply to a tcp:// buildkitd")

	o = BuildKitOptions{}
	parse(t, o.AddFlags, "--buildkit-host", "tcp://b:1234", "--buildkit-tls-ca", "ca.pem")
	o.Complete(env("BUILDKIT_HOST", "unix:///other"))
	if o.Host != "tcp://b:1234" {
		t.Errorf("--buildkit-host lost to $BUILDKIT_HOST: %q", o.Host)
	}
	if err := o.Validate(); err != nil {
		t.Error(err)
	}

	o = BuildKitOptions{}
	parse(t, o.AddFlags, "--buildkitd-path", "/opt/buildkitd")
	o.Complete(env("BUILDKIT_HOST", "tcp://b:1"))
	usage(t, o.Validate(), "--buildkitd-path starts idopipe's own buildkitd")
}

func TestProgressValidate(t *testing.T) {
	var o ProgressOptions
	parse(t, func(fs *pflag.FlagSet) { o.AddFlags(fs, PushProgressHelp) }, "--progress", "fancy")
	usage(t, o.Validate(), `unknown progress mode "fancy"`)
	for _, m := range build.ProgressModes {
		if err := (&ProgressOptions{Mode: m}).Validate(); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
}

func TestBuildOptions(t *testing.T) {
	img := ImageOptions{Name: "planner", Version: "1"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--provenance", "full"}, `unknown provenance mode "full"`},
		{[]string{"--label", "novalue"}, `--label "novalue" is not KEY=VALUE`},
		{[]string{"--extra-image", "name=planner,source=x"}, "needs a name of its own"},
		{[]string{"--extra-image", "name=a,colour=red"}, `unknown key "colour"`},
		{[]string{"--extra-image", "justaname"}, "is not key=value"},
	} {
		var o BuildOptions
		parse(t, func(fs *pflag.FlagSet) { o.AddFlags(fs, BuildFlags{Extras: true}) }, tc.args...)
		usage(t, o.Validate(img), tc.want)
	}

	var o BuildOptions
	parse(t, func(fs *pflag.FlagSet) { o.AddFlags(fs, BuildFlags{Extras: true}) },
		"--source", "src", "--cache-to", "type=local,dest=c", "--extra-image", "name=actuator,source=act,version=2",
		"--secret", "id=tok,env=BUILD_TOKEN", "--secret", "id=NPM,type=env")
	o.Complete(env("BUILD_TOKEN", "t", "NPM", "n", "GITHUB_TOKEN", "never"))
	if len(o.SecretEnv) != 2 || o.SecretEnv["BUILD_TOKEN"] != "t" || o.SecretEnv["NPM"] != "n" {
		t.Errorf("secret env %v: want only what --secret names", o.SecretEnv)
	}
	specs, err := o.Specs(img, "/cache")
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 || specs[0].Layout != "/cache/idopipe/oci/planner" || specs[0].Dockerfile != "src/Dockerfile" {
		t.Fatalf("main %+v", specs[0])
	}
	if x := specs[1]; x.Name != "actuator" || x.Version != "2" || x.Dockerfile != "act/Dockerfile" || x.CacheTo != nil || x.Layout != "" {
		t.Fatalf("extra %+v", x)
	}
	if _, err := o.Specs(img, ""); err == nil {
		t.Error("no cache directory and no --oci-layout: want an error")
	}
}

func TestPushValidate(t *testing.T) {
	var o PushOptions
	parse(t, o.AddFlags, "--mount-from", "other.io/o/base")
	usage(t, o.Validate("ghcr.io"), "is on registry other.io, not ghcr.io")
	o = PushOptions{}
	parse(t, o.AddFlags, "--mount-from", "o/base:1")
	usage(t, o.Validate("ghcr.io"), "is not a repository")
	o = PushOptions{}
	parse(t, o.AddFlags, "--mount-from", "My-Org/base", "--mount-from", "ghcr.io/o/x", "--tag", "latest")
	if err := o.Validate("ghcr.io"); err != nil {
		t.Fatal(err)
	}
	if len(o.Mounts) != 2 || o.Mounts[0].String() != "ghcr.io/my-org/base" {
		t.Errorf("mounts %v", o.Mounts)
	}
}

func TestSignOptions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--key-password-file", "pw"}, "--key-password-file without --key"},
		{[]string{"--identity-token", "tok"}, "--identity-token without --sign"},
		{[]string{"--key", "k", "--identity-token", "tok"}, "--identity-token and --key both name what signs"},
		{[]string{"--sign", "--key-password-file", "pw"}, "--key-password-file with keyless signing"},
		{[]string{"--sign", "--sigstore", "elsewhere"}, `unknown Sigstore instance "elsewhere"`},
		{[]string{"--sign", "--sigstore", "github"}, "no trusted root for the github Sigstore instance: pass --trusted-root"},
		{[]string{"--sign", "--fulcio-url", "https://fulcio.example"}, "no trusted root for the custom Sigstore instance"},
		{[]string{"--sign", "--fulcio-url", "fulcio.example"}, `invalid --fulcio-url "fulcio.example"`},
		{[]string{"--sign", "--rekor-url", "none", "--timestamp-url", "none"}, "needs a timestamp authority or a transparency log"},
		{[]string{"--sign", "--sigstore-ca", "/nonexistent/ca.pem"}, "cannot read --sigstore-ca"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var s SigstoreOptions
			o := NewSignOptions(&s)
			parse(t, func(fs *pflag.FlagSet) { o.AddFlags(fs); s.AddFlags(fs, SigstoreFlags{Signing: true}) }, tc.args...)
			err := s.Validate()
			if err == nil {
				err = o.Validate()
			}
			usage(t, err, tc.want)
		})
	}

	var s SigstoreOptions
	o := NewSignOptions(&s)
	parse(t, func(fs *pflag.FlagSet) { o.AddFlags(fs); s.AddFlags(fs, SigstoreFlags{Signing: true}) })
	if sg, err := o.ImageSigner(context.Background(), registry.Access{}); sg != nil || err != nil {
		t.Errorf("no --sign: %v %v", sg, err)
	}
	o.Complete(env("COSIGN_PASSWORD", "pw"))
	if pw, err := o.Password(); err != nil || string(pw) != "pw" {
		t.Errorf("password from $COSIGN_PASSWORD: %d bytes, %v; want the 2 bytes set", len(pw), err)
	}
}

// TestKeylessTokenSources: where keyless signing's OIDC token comes from,
// and the one-line refusal (exit 3, before any build) when none can.
func TestKeylessTokenSources(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  Getenv
		args []string
		want string // the source, or the error's words
		err  bool
	}{
		{name: "file", args: []string{"--identity-token", "tok.jwt"}, want: "tok.jwt"},
		{name: "env", env: env("SIGSTORE_ID_TOKEN", "x.y.z"), want: "SIGSTORE_ID_TOKEN"},
		{name: "file before env", env: env("SIGSTORE_ID_TOKEN", "x.y.z"), args: []string{"--identity-token", "tok.jwt"}, want: "tok.jwt"},
		{name: "actions", env: env("GITHUB_ACTIONS", "true", "ACTIONS_ID_TOKEN_REQUEST_URL", "https://runner.example/token", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "r"), want: "GitHub Actions"},
		{name: "actions without id-token permission", env: env("GITHUB_ACTIONS", "true"), err: true, want: "add `permissions: id-token: write` to the job"},
		{name: "nothing", err: true, want: "pass --identity-token FILE or set $SIGSTORE_ID_TOKEN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s SigstoreOptions
			o := NewSignOptions(&s)
			parse(t, func(fs *pflag.FlagSet) { o.AddFlags(fs); s.AddFlags(fs, SigstoreFlags{Signing: true}) }, append([]string{"--sign"}, tc.args...)...)
			o.Complete(tc.env)
			ts, err := o.tokens()
			if tc.err {
				if fail.ClassOf(err) != fail.Credentials || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v (class %v), want credentials saying %q", err, fail.ClassOf(err), tc.want)
				}
				return
			}
			if err != nil || !strings.Contains(ts.String(), tc.want) {
				t.Fatalf("source %v, %v; want %q", ts, err, tc.want)
			}
		})
	}
}

func TestPolicyOptions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--verify-key", filepath.Join(t.TempDir(), "absent.pub")}, "absent.pub"},
		{[]string{"--certificate-identity", "https://github.com/o/r/.github/workflows/r.yml@refs/heads/main", "--sigstore", "github"}, "no trusted root to check certificates of the github Sigstore instance against"},
		{[]string{"--certificate-identity-regexp", "(", "--trusted-root", "x.json"}, "("},
		{[]string{"--certificate-oidc-issuer", "https://token.actions.githubusercontent.com", "--trusted-root", "x.json"}, ""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var s SigstoreOptions
			o := NewPolicyOptions(&s)
			parse(t, func(fs *pflag.FlagSet) { o.AddFlags(fs); s.AddFlags(fs, SigstoreFlags{Signing: true}) }, tc.args...)
			if !o.Enabled() {
				t.Fatal("a policy flag given, but not Enabled")
			}
			err := o.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			if fail.ClassOf(err) != fail.Usage || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v (class %v), want usage saying %q", err, fail.ClassOf(err), tc.want)
			}
		})
	}
	var s SigstoreOptions
	o := NewPolicyOptions(&s)
	parse(t, func(fs *pflag.FlagSet) { o.AddFlags(fs); s.AddFlags(fs, SigstoreFlags{Signing: true}) })
	if o.Enabled() || o.Validate() != nil || !o.Policy.Empty() {
		t.Errorf("no policy flag: enabled %v, policy %v", o.Enabled(), o.Policy)
	}
}

func TestClusterOptions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--timeout", "-1s"}, "--timeout -1s is negative"},
		{[]string{"--lock-timeout", "-1s"}, "--lock-timeout -1s is negative"},
		{[]string{"--secret-name", ""}, "no pull Secret name"},
	} {
		var o ClusterOptions
		parse(t, func(fs *pflag.FlagSet) { o.AddFlags(fs, ClusterFlags{Writes: true}) }, tc.args...)
		usage(t, o.Validate(), tc.want)
	}
	var o ClusterOptions
	o.Complete(env("USER", "ann", "GITHUB_RUN_ID", "42"))
	if !strings.HasPrefix(o.LockHolder, "ann@") || !strings.HasSuffix(o.LockHolder, "(GitHub Actions run 42)") {
		t.Errorf("lock holder %q", o.LockHolder)
	}
	k := NewKubeOptions()
	parse(t, k.AddFlags, "-n", "")
	usage(t, k.Validate(), "no namespace")
}

func TestStagesValidate(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--from", "nope"}, `--from: unknown stage "nope"`},
		{[]string{"--to", "nope"}, `--to: unknown stage "nope"`},
		{[]string{"--skip", "wait,nope"}, `--skip: unknown stage "nope"`},
		{[]string{"--from", "push"}, "push needs the build stage"},
	} {
		var o StagesOptions
		parse(t, o.AddFlags, tc.args...)
		usage(t, o.Validate(), tc.want)
	}
	var o StagesOptions
	parse(t, o.AddFlags, "--from", "build", "--skip", "wait")
	if err := o.Validate(); err != nil || o.From != "build" || o.Skip[0] != "wait" {
		t.Fatalf("%+v %v", o, err)
	}
}
