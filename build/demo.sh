#!/usr/bin/env bash
# The whole release against the local stack that `make demo` starts (see
# cmd/localstack for the variables it sets): build the planner-shaped fixture
# with BuildKit, push it to the TLS registry with the token from
# $GITHUB_TOKEN, pull it back, create the namespace and pull Secret, apply the
# upstream IDO 0.4.0 manifest and CRDs, and wait for both Pods on the
# stack's real node. The image is signed keyless as in a GitHub Actions job
# (the stack's GitHub-shaped OIDC issuer hands out the job's token; Fulcio,
# the timestamp authority and Rekor v2 run on loopback), and the deploy is
# gated on the workflow's identity. Then release again to show that a rerun
# converges without writes, check who signed with verify-pull, and run the
# guide's checklist, which shows where each Pod runs and the digest its
# container runs.
set -euo pipefail
idopipe=${IDOPIPE:-$(pwd)/bin/idopipe}
args=(
  --source "$IDOPIPE_TEST_SOURCE"
  --build-context "golang:1.24.6=oci-layout://$IDOPIPE_TEST_BUSYBOX"
  --registry "$IDOPIPE_TEST_REGISTRY" --registry-ca "$IDOPIPE_TEST_REGISTRY_CA"
  --owner "Intel-Demo"
  --manifest "$IDOPIPE_TEST_FIXTURES/manifest-0.4.0.yaml"
  --crds "$IDOPIPE_TEST_FIXTURES/intents_crds_v1alpha1.yaml"
  --progress plain --timeout 2m
)
# Keyless: the stack's Sigstore instance, and the identity to require.
sigstore=(
  --fulcio-url "$IDOPIPE_TEST_FULCIO_URL" --rekor-url "$IDOPIPE_TEST_REKOR_URL"
  --timestamp-url "$IDOPIPE_TEST_TSA_URL" --trusted-root "$IDOPIPE_TEST_TRUSTED_ROOT"
)
policy=(--signer-repo idopipe-test/app --certificate-oidc-issuer "$IDOPIPE_TEST_OIDC_ISSUER")
args+=(--sign "${sigstore[@]}" "${policy[@]}")
echo "### idopipe release (first run)"
"$idopipe" release "${args[@]}"
echo
echo "### idopipe release (again: nothing to change)"
"$idopipe" release "${args[@]}" --progress quiet
echo
echo "### idopipe verify-pull (who signed it)"
"$idopipe" verify-pull --registry-ca "$IDOPIPE_TEST_REGISTRY_CA" "$IDOPIPE_TEST_REGISTRY/intel-demo/planner:0.4.0" \
  --trusted-root "$IDOPIPE_TEST_TRUSTED_ROOT" "${policy[@]}"
echo
echo "### idopipe doctor (node $IDOPIPE_TEST_NODE: the Pods' containers really run)"
"$idopipe" doctor -n ido --registry-ca "$IDOPIPE_TEST_REGISTRY_CA"
