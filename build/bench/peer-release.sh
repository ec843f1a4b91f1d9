#!/usr/bin/env bash
# The peer of `idopipe release` in the benchmarks: the release guide's steps
# as a bash script with buildctl, crane and kubectl. Build the planner-shaped
# fixture into an OCI layout, push it with crane (auth from $DOCKER_CONFIG,
# CA from $SSL_CERT_FILE), check that the registry resolves the tag to the
# built digest, then peer-deploy.sh (namespace, pull Secret, CRDs, manifest,
# wait for the Pods).
#
# Environment: BUILDCTL, CRANE, KUBECTL, BUILDKIT_HOST, KUBECONFIG, SRC (build
# context with its Dockerfile), BUSYBOX (OCI layout of the base image),
# REGISTRY, OWNER, NS, MANIFEST, CRDS, DOCKER_CONFIG, SSL_CERT_FILE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

base=$(grep -o 'sha256:[0-9a-f]\{64\}' "$BUSYBOX/index.json" | head -n1)
"$BUILDCTL" build --frontend dockerfile.v0 --progress plain \
  --local context="$SRC" --local dockerfile="$SRC" \
  --oci-layout busybox="$BUSYBOX" --opt context:golang:1.24.6="oci-layout://busybox@$base" \
  --output type=oci,dest="$out/oci",tar=false,name=planner:0.4.0 \
  --metadata-file "$out/meta.json"
built=$(grep -o '"containerimage.digest": *"sha256:[0-9a-f]*"' "$out/meta.json" | grep -o 'sha256:[0-9a-f]*')

tag="$REGISTRY/$(tr '[:upper:]' '[:lower:]' <<<"$OWNER")/planner:0.4.0"
pushed=$("$CRANE" push "$out/oci" "$tag")
if [ "${pushed#*@}" != "$built" ]; then
  echo "pushed ${pushed#*@}, built $built" >&2
  exit 1
fi
remote=$("$CRANE" digest "$tag")
if [ "$remote" != "$built" ]; then
  echo "$tag resolves to $remote, built $built" >&2
  exit 1
fi
IMAGE="$tag@$built" exec "$here/peer-deploy.sh"
