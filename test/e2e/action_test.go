package e2e

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/idopipe/idopipe/internal/testenv"
)

// The action tests run action.yml's steps the way the GitHub Actions runner
// runs a composite action's: each step's `run` in bash with its env (the
// ${{ }} expressions over inputs, github and steps evaluated), the runner's
// variables set, and fresh GITHUB_OUTPUT, GITHUB_ENV, GITHUB_PATH and
// GITHUB_STEP_SUMMARY files per step whose contents feed the later steps
// and the action's outputs. The steps run against the real local stack; the
// only stand-in is fakeGitHub, a file server on loopback in place of
// github.com's release downloads (there is no network here).

// actionMeta is the part of action.yml the runner reads.
type actionMeta struct {
	Inputs map[string]struct {
		Default string `yaml:"default"`
	} `yaml:"inputs"`
	Outputs map[string]struct {
		Value string `yaml:"value"`
	} `yaml:"outputs"`
	Runs struct {
		Using string `yaml:"using"`
		Steps []struct {
			ID    string            `yaml:"id"`
			Name  string            `yaml:"name"`
			Shell string            `yaml:"shell"`
			Env   map[string]string `yaml:"env"`
			Run   string            `yaml:"run"`
			Uses  string            `yaml:"uses"`
			If    string            `yaml:"if"`
		} `yaml:"steps"`
	} `yaml:"runs"`
}

// actionRun is one run of the action on a fresh runner.
type actionRun struct {
	workspace, temp string
	github          map[string]string // the github context
	inputs          map[string]string
	env             map[string]string // GITHUB_ENV, accumulated
	path            []string          // GITHUB_PATH, accumulated
	outputs         map[string]map[string]string
	steps           []stepResult
	summary         string // the job summary: every step's GITHUB_STEP_SUMMARY
	files           []string
	actionOutputs   map[string]string
	failed          string // the step that failed, "" when all passed
}

type stepResult struct {
	id, stdout, stderr string
	code               int
	envFile            string
}

func (a *actionRun) step(id string) stepResult {
	for _, s := range a.steps {
		if s.id == id {
			return s
		}
	}
	return stepResult{}
}

func (a *actionRun) String() string {
	var b strings.Builder
	for _, s := range a.steps {
		fmt.Fprintf(&b, "--- step %s: exit %d\nstdout:\n%s\nstderr:\n%s\n", s.id, s.code, s.stdout, s.stderr)
	}
	return b.String()
}

var expr = regexp.MustCompile(`\$\{\{\s*(.*?)\s*\}\}`)

// eval replaces the ${{ }} expressions of s; an expression this runner
// does not know fails the test rather than evaluate to "".
func (a *actionRun) eval(t *testing.T, s string) string {
	t.Helper()
	return expr.ReplaceAllStringFunc(s, func(m string) string {
		e := expr.FindStringSubmatch(m)[1]
		parts := strings.Split(e, ".")
		switch {
		case len(parts) == 2 && parts[0] == "inputs":
			v, ok := a.inputs[parts[1]]
			if !ok {
				t.Fatalf("action.yml uses undeclared input %q", parts[1])
			}
			return v
		case len(parts) == 2 && parts[0] == "github":
			v, ok := a.github[parts[1]]
			if !ok {
				t.Fatalf("action.yml uses github.%s, which this runner does not set", parts[1])
			}
			return v
		case len(parts) == 4 && parts[0] == "steps" && parts[2] == "outputs":
			return a.outputs[parts[1]][parts[3]]
		}
		t.Fatalf("action.yml expression %q is not one this runner evaluates", e)
		return ""
	})
}

// runAction runs action.yml with the given inputs (the rest take their
// defaults) on a fresh runner whose github context is gh.
func runAction(t *testing.T, gh, inputs map[string]string) *actionRun {
	t.Helper()
	return runActionIn(t, gh, inputs, nil)
}

// runActionIn is runAction with checkout, when not nil, filling the
// runner's workspace first, as actions/checkout would.
func runActionIn(t *testing.T, gh, inputs map[string]string, checkout func(workspace string), runnerEnv ...string) *actionRun {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var meta actionMeta
	if err := yaml.Unmarshal(b, &meta); err != nil {
		t.Fatalf("action.yml: %v", err)
	}
	if meta.Runs.Using != "composite" {
		t.Fatalf("action.yml runs using %q, not composite", meta.Runs.Using)
	}
	dir := t.TempDir()
	a := &actionRun{
		workspace: filepath.Join(dir, "workspace"), temp: filepath.Join(dir, "runner-temp"),
		github: map[string]string{}, inputs: map[string]string{}, env: map[string]string{},
		outputs: map[string]map[string]string{}, actionOutputs: map[string]string{},
	}
	for _, d := range []string{a.workspace, a.temp, filepath.Join(dir, "tool-cache"), filepath.Join(dir, "home")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if checkout != nil {
		checkout(a.workspace)
	}
	for k, v := range gh {
		a.github[k] = v
	}
	for k := range inputs {
		if _, ok := meta.Inputs[k]; !ok {
			t.Fatalf("input %q is not declared in action.yml", k)
		}
	}
	for k, in := range meta.Inputs {
		if v, ok := inputs[k]; ok {
			a.inputs[k] = v
		} else {
			a.inputs[k] = a.eval(t, in.Default)
		}
	}
	arch := map[string]string{"amd64": "X64", "arm64": "ARM64"}[runtime.GOARCH]
	runner := map[string]string{
		"CI": "true", "GITHUB_ACTIONS": "true",
		"GITHUB_WORKSPACE": a.workspace, "GITHUB_ACTION_PATH": root,
		"GITHUB_REPOSITORY": gh["repository"], "GITHUB_REPOSITORY_OWNER": gh["repository_owner"],
		"GITHUB_ACTOR": gh["actor"], "GITHUB_REF": gh["ref"], "GITHUB_REF_NAME": gh["ref_name"],
		"GITHUB_REF_TYPE": gh["ref_type"], "GITHUB_SHA": gh["sha"], "GITHUB_SERVER_URL": "https://github.com",
		"GITHUB_RUN_ID": "4711", "GITHUB_ACTION_REF": gh["action_ref"], "GITHUB_ACTION_REPOSITORY": gh["action_repository"],
		"RUNNER_OS": "Linux", "RUNNER_ARCH": arch, "RUNNER_TEMP": a.temp, "RUNNER_TOOL_CACHE": filepath.Join(dir, "tool-cache"),
	}
	// What the runner adds for a job's permissions (id-token: write).
	for _, kv := range runnerEnv {
		k, v, _ := strings.Cut(kv, "=")
		runner[k] = v
	}
	for i, s := range meta.Runs.Steps {
		if s.Uses != "" || s.If != "" || s.Shell != "bash" || s.Run == "" {
			t.Fatalf("step %d (%s): this runner runs bash `run` steps without `if`, got uses=%q if=%q shell=%q", i, s.ID, s.Uses, s.If, s.Shell)
		}
		files := map[string]string{}
		for _, f := range []string{"GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY"} {
			p := filepath.Join(a.temp, "_runner_file_commands", fmt.Sprintf("%s_%d", strings.ToLower(f), i))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			files[f] = p
			a.files = append(a.files, p)
		}
		script := filepath.Join(a.temp, fmt.Sprintf("step-%d.sh", i))
		if err := os.WriteFile(script, []byte(a.eval(t, s.Run)), 0o755); err != nil {
			t.Fatal(err)
		}
		// The environment: the machine's (minus what a runner would not
		// have: the stack's BuildKit, kubeconfig and token), the runner's
		// variables, GITHUB_ENV so far, GITHUB_PATH before PATH, the
		// step's env.
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			if strings.HasPrefix(k, "GITHUB_") || strings.HasPrefix(k, "RUNNER_") || strings.HasPrefix(k, "IDOPIPE_") ||
				k == "BUILDKIT_HOST" || k == "KUBECONFIG" || k == "GHCR_TOKEN" || k == "CI" {
				continue
			}
			env[k] = v
		}
		// A runner of its own: its own HOME (so no kubectl discovery
		// cache or docker config is shared with the other tests), with
		// this machine's Go caches, as actions/setup-go would restore.
		env["HOME"] = filepath.Join(dir, "home")
		for k, v := range goCaches(t) {
			env[k] = v
		}
		env["NO_PROXY"] = strings.Trim(env["NO_PROXY"]+",127.0.0.1,localhost", ",")
		env["no_proxy"] = env["NO_PROXY"]
		for k, v := range runner {
			env[k] = v
		}
		for k, v := range a.env {
			env[k] = v
		}
		for k, v := range files {
			env[k] = v
		}
		if len(a.path) > 0 {
			env["PATH"] = strings.Join(a.path, ":") + ":" + env["PATH"]
		}
		for k, v := range s.Env {
			env[k] = a.eval(t, v)
		}
		cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", script)
		cmd.Dir = a.workspace
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		res := stepResult{id: s.ID, stdout: out.String(), stderr: errb.String()}
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			res.code = exit.ExitCode()
		} else if err != nil {
			t.Fatalf("step %s: %v", s.ID, err)
		}
		outs, err := readKeyValues(files["GITHUB_OUTPUT"])
		if err != nil {
			t.Fatalf("step %s: GITHUB_OUTPUT: %v", s.ID, err)
		}
		a.outputs[s.ID] = outs
		envs, err := readKeyValues(files["GITHUB_ENV"])
		if err != nil {
			t.Fatalf("step %s: GITHUB_ENV: %v", s.ID, err)
		}
		for k, v := range envs {
			a.env[k] = v
		}
		if p, err := os.ReadFile(files["GITHUB_PATH"]); err == nil {
			for _, l := range strings.Split(strings.TrimSpace(string(p)), "\n") {
				if l != "" {
					a.path = append([]string{l}, a.path...)
				}
			}
		}
		if sum, err := os.ReadFile(files["GITHUB_STEP_SUMMARY"]); err == nil {
			a.summary += string(sum)
		}
		a.steps = append(a.steps, res)
		if res.code != 0 {
			a.failed = s.ID
			break
		}
	}
	if a.failed == "" {
		for k, o := range meta.Outputs {
			a.actionOutputs[k] = a.eval(t, o.Value)
		}
	}
	return a
}

var (
	goCachesOnce sync.Once
	goCachesEnv  map[string]string
)

// goCaches are this machine's Go build and module caches.
func goCaches(t *testing.T) map[string]string {
	t.Helper()
	goCachesOnce.Do(func() {
		goCachesEnv = map[string]string{}
		out, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH").Output()
		if err != nil {
			return
		}
		for i, v := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			goCachesEnv[[]string{"GOCACHE", "GOMODCACHE", "GOPATH"}[i]] = v
		}
	})
	if len(goCachesEnv) != 3 {
		t.Fatal("go env GOCACHE GOMODCACHE GOPATH failed")
	}
	return goCachesEnv
}

// readKeyValues reads a runner file command file: NAME=VALUE lines and
// NAME<<DELIMITER heredocs.
func readKeyValues(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if k, delim, ok := strings.Cut(line, "<<"); ok && !strings.Contains(k, "=") {
			var v []string
			for sc.Scan() && sc.Text() != delim {
				v = append(v, sc.Text())
			}
			out[k] = strings.Join(v, "\n")
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%q is neither NAME=VALUE nor NAME<<DELIMITER", line)
		}
		out[k] = v
	}
	return out, sc.Err()
}

// fakeGitHub stands in for github.com's release downloads
// (/OWNER/REPO/releases/download/TAG/ASSET) on loopback, serving the files
// it is given and 404 for everything else, and counts what was asked.
type fakeGitHub struct {
	URL   string
	mu    sync.Mutex
	files map[string][]byte
	asked map[string]int
}

func startFakeGitHub(t *testing.T) *fakeGitHub {
	t.Helper()
	f := &fakeGitHub{files: map[string][]byte{}, asked: map[string]int{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.asked[r.URL.Path]++
		b, ok := f.files[r.URL.Path]
		f.mu.Unlock()
		if !ok {
			http.Error(w, "Not Found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(b)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	f.URL = "http://" + l.Addr().String()
	return f
}

func (f *fakeGitHub) put(path string, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[path] = b
}

func (f *fakeGitHub) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked[path]
}

// release serves idopipe release tag of repo: the binary under test as
// idopipe-linux-ARCH and a SHA256SUMS as `make dist` writes it (sum is
// the checksum listed; "" lists the binary's own).
func (f *fakeGitHub) release(t *testing.T, repo, tag string, bin []byte, sum string) string {
	t.Helper()
	asset := "idopipe-linux-" + runtime.GOARCH
	h := sha256.Sum256(bin)
	if sum == "" {
		sum = hex.EncodeToString(h[:])
	}
	base := "/" + repo + "/releases/download/" + tag + "/"
	f.put(base+asset, bin)
	f.put(base+"SHA256SUMS", []byte(fmt.Sprintf("%s  idopipe-darwin-arm64\n%s  %s\n", strings.Repeat("0", 64), sum, asset)))
	return hex.EncodeToString(h[:])
}

var (
	buildkitTarOnce sync.Once
	buildkitTar     []byte
	buildkitTarErr  error
)

// buildkitRelease serves BuildKit's release tarball (bin/buildkitd and
// bin/buildctl) for version, made of the stack's pinned BuildKit binaries.
func (f *fakeGitHub) buildkitRelease(t *testing.T, version string) {
	t.Helper()
	buildkitTarOnce.Do(func() {
		// A gzip stream of stored blocks: the action lists and unpacks it
		// as it does BuildKit's real (compressed) release, without
		// seconds of CPU to deflate and inflate ~80 MB in each test run.
		var buf strings.Builder
		gz, _ := gzip.NewWriterLevel(&buf, gzip.NoCompression)
		tw := tar.NewWriter(gz)
		for _, name := range []string{"buildkitd", "buildctl"} {
			b, err := os.ReadFile(filepath.Join(stack.Tools, name))
			if err != nil {
				buildkitTarErr = err
				return
			}
			if err := tw.WriteHeader(&tar.Header{Name: "bin/" + name, Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
				buildkitTarErr = err
				return
			}
			if _, err := tw.Write(b); err != nil {
				buildkitTarErr = err
				return
			}
		}
		if err := tw.Close(); err != nil {
			buildkitTarErr = err
			return
		}
		if err := gz.Close(); err != nil {
			buildkitTarErr = err
			return
		}
		buildkitTar = []byte(buf.String())
	})
	if buildkitTarErr != nil {
		t.Fatalf("BuildKit release tarball: %v", buildkitTarErr)
	}
	f.put(fmt.Sprintf("/moby/buildkit/releases/download/%s/buildkit-%s.linux-%s.tar.gz", version, version, runtime.GOARCH), buildkitTar)
}

// stopActionBuildkitd ends the buildkitd the action's BuildKit step
// started on this runner (its pid file), and waits until it has exited.
func stopActionBuildkitd(t *testing.T, a *actionRun) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.temp, "buildkitd", "buildkitd.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return
	}
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || !strings.Contains(string(cmdline), "buildkitd") {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 200; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(stat), ") Z") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// githubContext is a tag push in repository OWNER/ido of a fork, running
// the action at actionRef.
func githubContext(fake *fakeGitHub, actionRef string) map[string]string {
	return map[string]string{
		"token": stack.Registry.Password, "actor": stack.Registry.Username,
		"repository": "Action-Test/ido", "repository_owner": "Action-Test",
		"ref": "refs/tags/v1.2.3", "ref_name": "v1.2.3", "ref_type": "tag", "sha": "0123456789abcdef0123456789abcdef01234567",
		"action_ref": actionRef, "action_repository": "idopipe/idopipe",
		"server_url": fake.URL,
	}
}

// assertTokenOnlyMasked: the registry token appears in no step's output
// but on its ::add-mask:: lines, which come before anything else the step
// prints, and in none of the runner's files.
func assertTokenOnlyMasked(t *testing.T, a *actionRun) {
	t.Helper()
	tok := stack.Registry.Password
	for _, s := range a.steps {
		assertNoToken(t, "stderr of step "+s.id, s.stderr)
		lines := strings.Split(s.stdout, "\n")
		for i, l := range lines {
			if l != "::add-mask::"+tok && strings.Contains(l, tok) {
				t.Errorf("step %s: the token leaked into stdout line %d", s.id, i+1)
			}
		}
		// The runner hides the value from the mask command on: it must
		// come before anything else the step prints.
		if s.id == "release" && lines[0] != "::add-mask::"+tok {
			t.Errorf("step release: the first line is not the token's mask: %q", lines[0])
		}
	}
	for _, f := range a.files {
		b, _ := os.ReadFile(f)
		assertNoToken(t, f, string(b))
	}
	assertNoToken(t, "the job summary", a.summary)
	_ = filepath.WalkDir(a.temp, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() && (d.Name() == "root" || d.Name() == "bin") {
			if d != nil && d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if fi, err := d.Info(); err == nil && !d.IsDir() && fi.Size() < 1<<20 {
			b, _ := os.ReadFile(p)
			assertNoToken(t, "runner file "+p, string(b))
		}
		return nil
	})
}

// actionInputs releases the fixture as owner into ns against the stack's
// registry (and cluster, with a kubeconfig).
func actionInputs(owner, version string) map[string]string {
	return map[string]string{
		"source":       source,
		"args":         "--build-context\ngolang:1.24.6=oci-layout://" + busybox + "\n--timeout\n60s",
		"registry":     stack.Registry.Host,
		"registry-ca":  stack.Registry.CAFile,
		"owner":        owner,
		"version":      version,
		"releases-url": "", // set by the test
	}
}

var runStep = regexp.MustCompile(`(?m)^#(\d+) \[build \d/\d\] RUN chmod`)

// runCached tells whether BuildKit's plain progress shows the fixture's
// RUN step as CACHED.
func runCached(progress string) bool {
	m := runStep.FindStringSubmatch(progress)
	return m != nil && regexp.MustCompile(`(?m)^#`+m[1]+` CACHED$`).MatchString(progress)
}

// TestActionRelease runs the action as a tag push of an IDO fork would,
// with a kubeconfig: idopipe installed from its release (a fake GitHub on
// loopback serves the assets and SHA256SUMS), buildkitd from BuildKit's
// release tarball, then the whole release into the cluster. The outputs,
// job summary, log groups and masking are what the runner would get. A
// second run on a fresh runner (new buildkitd, empty local cache) builds
// from the registry cache under :buildcache.
func TestActionRelease(t *testing.T) {
	t.Parallel()
	fake := startFakeGitHub(t)
	bin, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	sum := fake.release(t, "idopipe/idopipe", "v0.9.0", bin, "")
	fake.buildkitRelease(t, "v0.34.2")
	kubeconfig, err := os.ReadFile(stack.Cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	in := actionInputs("Action-Test", "")
	in["releases-url"] = fake.URL
	in["kubeconfig"] = string(kubeconfig) // as a secret holds it
	in["manifests"] = manifestFor("action")
	in["crds"] = filepath.Join(fixtures, "intents_crds_v1alpha1.yaml")
	in["namespace"] = "action"
	cleanupNamespace(t, "action")
	in["tags"] = "latest"
	in["buildkitd-config"] = fmt.Sprintf("[registry.%q]\n  http = false\n  ca = [%q]\n", stack.Registry.Host, stack.Registry.CAFile)

	start := time.Now()
	a := runAction(t, githubContext(fake, "v0.9.0"), in)
	first := time.Since(start)
	t.Cleanup(func() { stopActionBuildkitd(t, a) })
	if a.failed != "" {
		t.Fatalf("the action failed at step %s:\n%s", a.failed, a)
	}

	// Installed from the release, checked against SHA256SUMS.
	if from := a.outputs["install"]["from"]; from != "release" {
		t.Errorf("idopipe came from %q, not the release:\n%s", from, a.step("install").stdout)
	}
	got, err := os.ReadFile(a.outputs["install"]["path"])
	if h := sha256.Sum256(got); err != nil || hex.EncodeToString(h[:]) != sum {
		t.Errorf("the installed idopipe is not the release asset: %v", err)
	}
	if n := fake.count("/idopipe/idopipe/releases/download/v0.9.0/SHA256SUMS"); n != 1 {
		t.Errorf("SHA256SUMS asked %d times", n)
	}
	// buildkitd from BuildKit's release, used by the build.
	if addr := a.outputs["buildkit"]["address"]; addr != "unix://"+filepath.Join(a.temp, "buildkitd", "buildkitd.sock") || a.env["BUILDKIT_HOST"] != addr {
		t.Errorf("BuildKit address %q, GITHUB_ENV BUILDKIT_HOST %q", addr, a.env["BUILDKIT_HOST"])
	}
	if !strings.Contains(a.step("release").stdout, "--buildkit-host unix://"+filepath.Join(a.temp, "buildkitd", "buildkitd.sock")) {
		t.Errorf("the release did not build on the action's buildkitd:\n%s", a.step("release").stdout)
	}
	t.Logf("BuildKit step: %s", strings.TrimSpace(a.step("buildkit").stdout))

	// Outputs: the version is the pushed git tag; the owner lowercased.
	image := stack.Registry.Host + "/action-test/planner:v1.2.3"
	o := a.actionOutputs
	if o["image"] != image || !strings.HasPrefix(o["digest"], "sha256:") || o["ref"] != image+"@"+o["digest"] || o["pods-ready"] != "2/2" {
		t.Errorf("action outputs %v\n%s", o, a)
	}
	// The job summary, the log groups, the masking.
	for _, want := range []string{"## idopipe release", "✅ released", "`" + o["ref"] + "`", "| build |", "| wait |", "2/2 Ready", "| planner | true |"} {
		if !strings.Contains(a.summary, want) {
			t.Errorf("job summary lacks %q:\n%s", want, a.summary)
		}
	}
	rel := a.step("release").stdout
	for _, stage := range []string{"validate", "build", "checks", "push", "verify-pull", "secret", "apply", "wait"} {
		if !strings.Contains(rel, "::group::"+stage+"\n") {
			t.Errorf("no log group for stage %s", stage)
		}
	}
	if strings.Count(rel, "::group::") != strings.Count(rel, "::endgroup::") {
		t.Error("log groups are not all closed")
	}
	if !strings.Contains(rel, "private: anonymous pulls are refused, so the cluster needs the pull Secret") {
		t.Errorf("verify-pull does not say the package is private:\n%s", rel)
	}
	assertTokenOnlyMasked(t, a)
	// The kubeconfig content went to a file only the runner user reads.
	if fi, err := os.Stat(filepath.Join(a.temp, "idopipe-kubeconfig")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig file: %v %v", fi, err)
	}

	// A rerun on a fresh runner: a new buildkitd with an empty local
	// cache builds the RUN step from the registry cache.
	stopActionBuildkitd(t, a)
	start = time.Now()
	b := runAction(t, githubContext(fake, "v0.9.0"), in)
	second := time.Since(start)
	t.Cleanup(func() { stopActionBuildkitd(t, b) })
	if b.failed != "" {
		t.Fatalf("the rerun failed at step %s:\n%s", b.failed, b)
	}
	if !runCached(b.step("release").stderr) {
		t.Errorf("the rerun on a fresh buildkitd did not take the RUN step from the registry cache:\n%s", b.step("release").stderr)
	}
	if runCached(a.step("release").stderr) {
		t.Errorf("the first run found the RUN step cached: the rerun's CACHED proves nothing")
	}
	if b.actionOutputs["pods-ready"] != "2/2" {
		t.Errorf("rerun outputs %v", b.actionOutputs)
	}
	t.Logf("action run 1 (cold runner, no registry cache) %.1fs, run 2 (fresh runner, registry cache) %.1fs", first.Seconds(), second.Seconds())
}

// TestActionWithoutKubeconfig: no kubeconfig means build, push and verify
// only; the action's ref has no release (a branch), so idopipe is built
// from the action's source; a given buildkit-host is used as is.
func TestActionWithoutKubeconfig(t *testing.T) {
	t.Parallel()
	fake := startFakeGitHub(t)
	in := actionInputs("Action-Nokube", "2.0.0")
	in["releases-url"] = fake.URL
	in["buildkit-host"] = stack.BuildKit.Address
	in["cache"] = "none"
	a := runAction(t, githubContext(fake, "main"), in)
	if a.failed != "" {
		t.Fatalf("the action failed at step %s:\n%s", a.failed, a)
	}
	if a.outputs["install"]["from"] != "source" || !strings.Contains(a.step("install").stdout, "::notice title=idopipe install::no idopipe release main of idopipe/idopipe") {
		t.Errorf("idopipe was not built from source:\n%s", a)
	}
	if n := fake.count("/idopipe/idopipe/releases/download/main/SHA256SUMS"); n != 1 {
		t.Errorf("SHA256SUMS of main asked %d times", n)
	}
	if a.outputs["buildkit"]["address"] != stack.BuildKit.Address {
		t.Errorf("buildkit address %q", a.outputs["buildkit"]["address"])
	}
	image := stack.Registry.Host + "/action-nokube/planner:2.0.0"
	o := a.actionOutputs
	if o["image"] != image || o["ref"] != image+"@"+o["digest"] || o["pods-ready"] != "0/0" {
		t.Errorf("action outputs %v", o)
	}
	rel := a.step("release").stdout
	for _, stage := range []string{"secret", "apply", "wait"} {
		if strings.Contains(rel, "::group::"+stage+"\n") {
			t.Errorf("stage %s ran without a kubeconfig", stage)
		}
	}
	if !strings.Contains(rel, "::group::verify-pull\n") || !strings.Contains(rel, "no cluster stage ran") {
		t.Errorf("release without a cluster:\n%s", rel)
	}
	if !strings.Contains(a.summary, "## idopipe release") || strings.Contains(a.summary, "Pods in") {
		t.Errorf("job summary:\n%s", a.summary)
	}
	assertTokenOnlyMasked(t, a)
}

// TestActionFailures: what goes wrong before or in the release is one
// ::error annotation naming the cause and the fix, and the step fails.
func TestActionFailures(t *testing.T) {
	t.Parallel()
	fake := startFakeGitHub(t)
	bin, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	// A release asset that does not match SHA256SUMS is not installed.
	fake.release(t, "idopipe/idopipe", "v0.9.1", bin, strings.Repeat("ab", 32))
	in := actionInputs("Action-Fail", "3.0.0")
	in["releases-url"] = fake.URL
	in["buildkit-host"] = stack.BuildKit.Address
	a := runAction(t, githubContext(fake, "v0.9.1"), in)
	if a.failed != "install" || !strings.Contains(a.step("install").stdout, "::error title=idopipe install::idopipe-linux-"+runtime.GOARCH+" of release v0.9.1 does not match its SHA256SUMS") {
		t.Errorf("a corrupt asset:\n%s", a)
	}
	if _, err := os.Stat(filepath.Join(a.temp, "idopipe", "bin", "idopipe")); err == nil {
		t.Error("the corrupt asset was installed")
	}

	// A buildkitd that cannot start (its config is not TOML) fails the
	// BuildKit step with its own last word.
	fake.release(t, "idopipe/idopipe", "v0.9.0", bin, "")
	fake.buildkitRelease(t, "v0.34.2")
	broken := actionInputs("Action-Fail", "3.0.0")
	broken["releases-url"] = fake.URL
	broken["buildkitd-config"] = "[registry\n"
	a = runAction(t, githubContext(fake, "v0.9.0"), broken)
	stopActionBuildkitd(t, a)
	if a.failed != "buildkit" || !strings.Contains(a.step("buildkit").stdout, "::error title=idopipe buildkit::buildkitd exited while starting: ") {
		t.Errorf("a buildkitd that cannot start:\n%s", a)
	}

	// A stage that needs a cluster, without a kubeconfig.
	in["stages"] = "build,push,apply"
	a = runAction(t, githubContext(fake, "v0.9.0"), in)
	if a.failed != "release" || !strings.Contains(a.step("release").stdout, "::error title=idopipe::stage apply needs a cluster: pass the kubeconfig input") {
		t.Errorf("apply without a kubeconfig:\n%s", a)
	}

	// A Dockerfile error is annotated with its file and line.
	src := t.TempDir()
	df := filepath.Join(src, "Dockerfile")
	if err := os.WriteFile(df, []byte("FROM golang:1.24.6\nRUN exit 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	delete(in, "stages")
	in["source"] = src
	a = runAction(t, githubContext(fake, "v0.9.0"), in)
	rel := a.step("release")
	if a.failed != "release" || rel.code != 5 || !strings.Contains(rel.stdout, "::error title=idopipe build,file="+df+",line=2::") {
		t.Errorf("a failing RUN step:\n%s", a)
	}
	if !strings.Contains(a.summary, "❌ failed:") {
		t.Errorf("job summary of a failed release:\n%s", a.summary)
	}
	assertTokenOnlyMasked(t, a)
}

// TestActionKeyless: with `sign: true` in a job with id-token: write (the
// runner's token request variables), the action signs keyless, gates on
// the signer-workflow input, and outputs the bundle's digest; the token
// is in no step's output and no runner file.
func TestActionKeyless(t *testing.T) {
	t.Parallel()
	fake := startFakeGitHub(t)
	in := actionInputs("Action-Keyless", "3.0.0")
	in["releases-url"] = fake.URL
	in["buildkit-host"] = stack.BuildKit.Address
	in["cache"] = "none"
	in["sign"] = "true"
	in["trusted-root"] = stack.Sigstore.TrustedRoot
	in["signer-workflow"] = keylessRepo + "/.github/workflows/release.yml"
	in["certificate-oidc-issuer"] = stack.Sigstore.IssuerURL
	s := stack.Sigstore
	in["args"] += "\n--fulcio-url\n" + s.FulcioURL + "\n--rekor-url\n" + s.RekorURL + "\n--timestamp-url\n" + s.TSAURL
	a := runActionIn(t, githubContext(fake, "main"), in, nil, actionsEnv(releaseClaims())...)
	if a.failed != "" {
		t.Fatalf("the action failed at step %s:\n%s", a.failed, a)
	}
	rel := a.step("release").stdout
	if !strings.Contains(rel, "with a certificate for "+releaseClaims().SAN()) || !strings.Contains(rel, "verified with "+releaseClaims().SAN()) {
		t.Errorf("the release neither signed keyless nor gated on the workflow:\n%s", rel)
	}
	if b := a.actionOutputs["bundle"]; !strings.HasPrefix(b, "sha256:") || len(b) != 71 {
		t.Errorf("bundle output %q, want the bundle referrer's digest", b)
	}
	for _, st := range a.steps {
		if jwtShape.MatchString(st.stdout + st.stderr) {
			t.Errorf("step %s printed an OIDC token", st.id)
		}
	}
	for _, f := range a.files {
		if b, err := os.ReadFile(f); err == nil && jwtShape.Match(b) {
			t.Errorf("runner file %s holds an OIDC token", f)
		}
	}
	assertTokenOnlyMasked(t, a)
}
