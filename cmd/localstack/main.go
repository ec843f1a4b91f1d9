// Command localstack starts idopipe's local stack (buildkitd, a TLS registry
// with GHCR's token flow, a one-node cluster with a real kubelet, a private
// Sigstore instance: Fulcio, the timestamp authority, Rekor v2 and a
// GitHub-shaped OIDC issuer), prepares
// the planner-shaped build fixture, runs one command against it, and stops
// the stack. `make demo` uses it to run a whole release.
//
//	localstack [-keep] [-kube-builder] -- COMMAND [ARG...]
//
// The command gets the stack in its environment: BUILDKIT_HOST, KUBECONFIG,
// GITHUB_ACTOR, GITHUB_TOKEN, IDOPIPE_TEST_REGISTRY, IDOPIPE_TEST_REGISTRY_CA,
// IDOPIPE_TEST_SOURCE (the fixture's build context), IDOPIPE_TEST_BUSYBOX (the
// base image's OCI layout), IDOPIPE_TEST_FIXTURES (the upstream manifests)
// and IDOPIPE_TEST_NODE (the node's name); for keyless signing
// IDOPIPE_TEST_FULCIO_URL, IDOPIPE_TEST_TSA_URL, IDOPIPE_TEST_REKOR_URL (the
// servers, plain HTTP on loopback), IDOPIPE_TEST_OIDC_ISSUER (the issuer
// its certificates name), IDOPIPE_TEST_TRUSTED_ROOT (trusted_root.json:
// Fulcio's CA, the TSA's chain, Rekor's key), IDOPIPE_TEST_TRUSTED_ROOT_NO_LOG
// (the same without Rekor, as GitHub's instance), IDOPIPE_TEST_SIGNING_CONFIG
// (a signing_config v0.2 for cosign v3), IDOPIPE_TEST_SIGNING_CONFIG_NO_LOG
// (Fulcio and the TSA only), and ACTIONS_ID_TOKEN_REQUEST_URL
// and ACTIONS_ID_TOKEN_REQUEST_TOKEN, the runner's pair (as with
// `permissions: id-token: write`) that hands out the issuer's tokens for a
// push to main of idopipe-test/app by .github/workflows/release.yml (the
// defaults of testenv.GitHubClaims), whose certificate identity is
// IDOPIPE_TEST_ACTIONS_SAN; with -kube-builder also
// IDOPIPE_TEST_BUILDER_IMAGE (the image of `idopipe buildkit create
// --kubernetes`, in the node's docker.io mirror).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/idopipe/idopipe/internal/testenv"
)

func main() {
	keep := flag.Bool("keep", false, "keep the stack's directory (logs, state) after it stops")
	kubeBuilder := flag.Bool("kube-builder", false, "push the image of a BuildKit builder in the cluster (moby/buildkit:<pinned>) to the node's docker.io mirror; its reference is $IDOPIPE_TEST_BUILDER_IMAGE")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: localstack [-keep] -- COMMAND [ARG...]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, *keep, *kubeBuilder, flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "localstack:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func run(ctx context.Context, keep, kubeBuilder bool, args []string) (int, error) {
	if keep {
		os.Setenv("IDOPIPE_KEEP_STACK", "1")
	}
	start := time.Now()
	s, err := testenv.Start(ctx, "", testenv.All)
	if err != nil {
		return 1, err
	}
	defer s.Stop()
	fmt.Fprintf(os.Stderr, "localstack: up in %.1fs (state in %s)\n", time.Since(start).Seconds(), s.Dir)
	src := filepath.Join(s.Dir, "fixture")
	if err := testenv.PlannerFixture(ctx, src); err != nil {
		return 1, err
	}
	busybox := filepath.Join(s.Dir, "busybox")
	if _, err := testenv.BusyboxLayout(busybox); err != nil {
		return 1, err
	}
	fixtures, err := testenv.Fixtures()
	if err != nil {
		return 1, err
	}
	var builderImage string
	if kubeBuilder {
		if builderImage, err = s.PushBuilderImage(ctx); err != nil {
			return 1, err
		}
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), s.Env()...)
	cmd.Env = append(cmd.Env, "IDOPIPE_TEST_SOURCE="+src, "IDOPIPE_TEST_BUSYBOX="+busybox, "IDOPIPE_TEST_FIXTURES="+fixtures, "IDOPIPE_TEST_NODE="+testenv.NodeName)
	if s.Sigstore != nil {
		url, reqTok := s.Sigstore.ActionsRequest(testenv.GitHubClaims{})
		cmd.Env = append(cmd.Env, "ACTIONS_ID_TOKEN_REQUEST_URL="+url, "ACTIONS_ID_TOKEN_REQUEST_TOKEN="+reqTok,
			"IDOPIPE_TEST_ACTIONS_SAN="+testenv.GitHubClaims{}.SAN())
	}
	if builderImage != "" {
		cmd.Env = append(cmd.Env, "IDOPIPE_TEST_BUILDER_IMAGE="+builderImage)
	}
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	return 0, err
}
