package sign_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/registry"
)

// The tests sign and verify against the local stack's registry (TLS and
// GHCR's token flow, the stand-in for GHCR), started once for the package.
var stack *testenv.Stack

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // the fast tier: no stack, its tests skip
	}
	var err error
	stack, err = testenv.Start(context.Background(), "", testenv.Parts{Registry: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "sign tests: start the registry:", err)
		os.Exit(1)
	}
	code := m.Run()
	stack.Stop()
	os.Exit(code)
}

func access() registry.Access {
	c := creds.Credentials{Username: stack.Registry.Username, Token: creds.NewSecret(stack.Registry.Password), Source: "the test"}
	return registry.Access{Creds: &c, CAFile: stack.Registry.CAFile}
}

func remoteOpts(t *testing.T, a registry.Access) []remote.Option {
	t.Helper()
	opts, err := a.Options(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return opts
}

// pushImage pushes a random single-platform image to repo:tag.
func pushImage(t *testing.T, repo, tag string) name.Digest {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	return write(t, repo, tag, img)
}

// provenance is a SLSA v0.2 statement as BuildKit writes one for a build
// of a local context whose git labels idopipe set.
func provenance(subject v1.Hash) []byte {
	st := map[string]any{
		"_type":         "https://in-toto.io/Statement/v0.1",
		"predicateType": "https://slsa.dev/provenance/v0.2",
		"subject":       []any{map[string]any{"name": "pkg:docker/planner@0.4.0", "digest": map[string]string{"sha256": subject.Hex}}},
		"predicate": map[string]any{
			"builder":   map[string]any{"id": ""},
			"buildType": "https://mobyproject.org/buildkit@v1",
			"invocation": map[string]any{
				"configSource": map[string]any{"entryPoint": "Dockerfile"},
				"parameters": map[string]any{"args": map[string]string{
					"label:org.opencontainers.image.source":   "https://github.com/intel/intent-driven-orchestration",
					"label:org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
				}},
			},
		},
	}
	b, _ := json.Marshal(st)
	return b
}

// pushIndex pushes a two-platform index with a BuildKit-style provenance
// attestation manifest (SLSA v0.2) for each image.
func pushIndex(t *testing.T, repo, tag string) (name.Digest, []v1.Hash) {
	t.Helper()
	idx, children := provenanceIndex(t, provenance, "https://slsa.dev/provenance/v0.2")
	ref := tagRef(t, repo, tag)
	if err := remote.WriteIndex(ref, idx, remoteOpts(t, access())...); err != nil {
		t.Fatal(err)
	}
	h, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ref.Context().Digest(h.String()), children
}

// provenanceIndex is a two-platform index as BuildKit writes it: each
// image followed by its attestation manifest (platform unknown/unknown,
// the reference-type annotations) holding statement(image digest) of
// predicateType. It returns the index and the platform images' digests.
func provenanceIndex(t *testing.T, statement func(v1.Hash) []byte, predicateType string) (v1.ImageIndex, []v1.Hash) {
	t.Helper()
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var children []v1.Hash
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(128, 1)
		if err != nil {
			t.Fatal(err)
		}
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		h, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		children = append(children, h)
		att, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
			Layer:       static.NewLayer(statement(h), "application/vnd.in-toto+json"),
			Annotations: map[string]string{"in-toto.io/predicate-type": predicateType},
		})
		if err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx,
			mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}},
			mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{
				Platform:    &v1.Platform{OS: "unknown", Architecture: "unknown"},
				Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": h.String()},
			}})
	}
	return idx, children
}

func tagRef(t *testing.T, repo, tag string) name.Tag {
	t.Helper()
	ref, err := name.NewTag(stack.Registry.Host + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func write(t *testing.T, repo, tag string, img v1.Image) name.Digest {
	t.Helper()
	ref := tagRef(t, repo, tag)
	if err := remote.Write(ref, img, remoteOpts(t, access())...); err != nil {
		t.Fatal(err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ref.Context().Digest(h.String())
}

// cosign is the pinned cosign CLI: $IDOPIPE_COSIGN, else the stack's tools
// directory (build/tools/build.sh links it there).
func cosign(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("IDOPIPE_COSIGN"); p != "" {
		return p
	}
	p := filepath.Join(stack.Tools, "cosign")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("cosign is not in the tools directory %s: run build/tools/build.sh (or set IDOPIPE_COSIGN)", stack.Tools)
	}
	return p
}

// runCosign runs cosign with the registry's credentials in a docker config
// of its own (never in argv) and its CA; env adds KEY=VALUE pairs.
func runCosign(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	return runCosignIn(t, "", env, args...)
}

// runCosignIn is runCosign in the working directory wd ("" for any).
func runCosignIn(t *testing.T, wd string, env []string, args ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(stack.Registry.Username + ":" + stack.Registry.Password))
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, stack.Registry.Host, auth)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cosign(t), args...)
	cmd.Dir = wd
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "DOCKER_CONFIG=" + dir,
		"TUF_ROOT=" + filepath.Join(dir, "tuf"), "SIGSTORE_NO_CACHE=true",
	}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
