package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Stack is the whole local stack.
type Stack struct {
	Dir      string
	Tools    string
	Registry *Registry
	Mirror   *Registry // the node's docker.io mirror (anonymous), with Parts.Node
	BuildKit *BuildKit
	Cluster  *Cluster
	Sigstore *Sigstore // Fulcio, the timestamp authority, Rekor v2 and the GitHub-shaped OIDC issuer
	owned    bool      // Dir was made by Start and is removed by Stop
}

// Parts selects what Start starts. Node (a real kubelet; it needs Cluster
// and Registry) runs one per machine at a time: a second stack asking for
// one waits until the first has stopped. So does Sigstore (its timestamp
// authority's metrics port is fixed).
type Parts struct {
	Registry, BuildKit, Cluster, Node, Sigstore bool
	// Held are machine locks the caller holds (HoldMachineLocks): the
	// node and the timestamp authority share them instead of waiting.
	Held *MachineLocks
}

// All is every part.
var All = Parts{Registry: true, BuildKit: true, Cluster: true, Node: true, Sigstore: true}

// Start starts the selected parts with state under dir ("" for a new
// temporary directory, removed by Stop).
func Start(ctx context.Context, dir string, parts Parts) (s *Stack, err error) {
	tools, err := ToolsDir()
	if err != nil {
		return nil, err
	}
	owned := dir == ""
	if owned {
		if dir, err = os.MkdirTemp("", "idopipe-stack-"); err != nil {
			return nil, err
		}
	}
	s = &Stack{Dir: dir, Tools: tools, owned: owned}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	cas := map[string]string{}
	if parts.Registry {
		if s.Registry, err = startRegistry(ctx, tools, filepath.Join(dir, "registry"), false); err != nil {
			return s, err
		}
		cas[s.Registry.Host] = s.Registry.CAFile
	}
	if parts.Sigstore {
		if s.Sigstore, err = startSigstore(ctx, tools, filepath.Join(dir, "sigstore"), parts.Held); err != nil {
			return s, err
		}
	}
	if parts.BuildKit {
		if s.BuildKit, err = startBuildKit(ctx, tools, filepath.Join(dir, "buildkit"), cas); err != nil {
			return s, err
		}
	}
	var node *nodeConfig
	if parts.Node {
		if !parts.Cluster || !parts.Registry {
			return s, errors.New("testenv: a node needs the cluster and the registry")
		}
		if s.Mirror, err = startRegistry(ctx, tools, filepath.Join(dir, "mirror"), true); err != nil {
			return s, err
		}
		if err := fillMirror(ctx, filepath.Join(dir, "mirror"), s.Mirror); err != nil {
			return s, err
		}
		node = &nodeConfig{
			tools:      tools,
			stackDir:   dir,
			held:       parts.Held,
			registries: []RegistryTrust{{Host: s.Registry.Host, CAFile: s.Registry.CAFile}},
			mirror:     RegistryTrust{Host: s.Mirror.Host, CAFile: s.Mirror.CAFile},
		}
	}
	if parts.Cluster {
		if s.Cluster, err = startCluster(ctx, tools, filepath.Join(dir, "cluster"), node); err != nil {
			return s, err
		}
	}
	return s, nil
}

// Stop ends every part that was started; it is safe to call twice.
func (s *Stack) Stop() error {
	if s == nil {
		return nil
	}
	s.Cluster.Stop()
	s.BuildKit.Stop()
	s.Mirror.Stop()
	s.Registry.Stop()
	s.Sigstore.Stop()
	if s.owned && os.Getenv("IDOPIPE_KEEP_STACK") == "" {
		s.owned = false
		return os.RemoveAll(s.Dir)
	}
	return nil
}

// RepoRoot finds the idopipe checkout (the directory holding go.mod) from
// the working directory upwards.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// BuildCache is a folder for the binaries the tests build from this
// checkout, kept between runs: $IDOPIPE_CACHE/build/<hash of the
// checkout's path> ($IDOPIPE_CACHE defaults to the user's cache folder's
// idopipe, as in build/tools). go build -o a binary there links only when
// its code or a dependency changed.
func BuildCache() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cache := os.Getenv("IDOPIPE_CACHE")
	if cache == "" {
		user, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("no cache folder for the tests' binaries (set IDOPIPE_CACHE): %w", err)
		}
		cache = filepath.Join(user, "idopipe")
	}
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(cache, "build", hex.EncodeToString(sum[:6]))
	return dir, os.MkdirAll(dir, 0o755)
}

// Fixtures is testdata/ido in the checkout: idopipe's own IDO-shaped
// manifest and CRDs (see its README), which need nothing but a clone.
func Fixtures() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "testdata", "ido")
	if _, err := os.Stat(filepath.Join(dir, "manifest-0.4.0.yaml")); err != nil {
		return "", fmt.Errorf("idopipe's own fixtures are missing from the checkout: %w", err)
	}
	return dir, nil
}

// UpstreamFixturesDir is where the upstream IDO 0.4.0 manifest and CRDs sit
// when the workspace provides them, beside the checkout. They are optional
// input; see UpstreamFixtures.
const UpstreamFixturesDir = "../shared/fixtures/ido" // optional: the tests that read it skip when absent

// UpstreamFixtures is the folder holding the upstream IDO 0.4.0 manifest and
// CRDs, or an error saying which folder is missing: the tests that check
// idopipe against real upstream input skip with that one line when it is
// absent (a clone alone does not have it).
func UpstreamFixtures() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, filepath.FromSlash(UpstreamFixturesDir))
	if _, err := os.Stat(filepath.Join(dir, "manifest-0.4.0.yaml")); err != nil {
		return "", fmt.Errorf("skipped: the optional upstream IDO fixtures folder %s is not present beside the checkout", UpstreamFixturesDir)
	}
	return dir, nil
}

// SkipWithoutUpstream returns the upstream fixtures folder, or skips t with
// one line naming the missing folder.
func SkipWithoutUpstream(t interface {
	Helper()
	Skip(...any)
}) string {
	t.Helper()
	dir, err := UpstreamFixtures()
	if err != nil {
		t.Skip(err.Error())
	}
	return dir
}

// Env is the environment a release against this stack runs with: where
// BuildKit, the registry and the cluster are, and the registry credentials
// (in the environment, never on a command line).
func (s *Stack) Env() []string {
	var env []string
	if s.BuildKit != nil {
		env = append(env, "BUILDKIT_HOST="+s.BuildKit.Address)
	}
	if s.Registry != nil {
		env = append(env,
			"IDOPIPE_TEST_REGISTRY="+s.Registry.Host,
			"IDOPIPE_TEST_REGISTRY_CA="+s.Registry.CAFile,
			"GITHUB_ACTOR="+s.Registry.Username,
			"GITHUB_TOKEN="+s.Registry.Password,
		)
	}
	if s.Cluster != nil {
		env = append(env, "KUBECONFIG="+s.Cluster.Kubeconfig)
	}
	if s.Sigstore != nil {
		env = append(env, s.Sigstore.Env()...)
	}
	return env
}

// NeedStack skips t when the tests run with -short: the fast tier (`make
// test-unit`) runs every test that needs no stack, and starts none.
func NeedStack(t interface {
	Helper()
	Skip(...any)
}) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the local stack: skipped with -short")
	}
}
