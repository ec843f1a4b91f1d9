#!/usr/bin/env bash
# Builds the pinned tools of the local test stack into a cache outside the
# repository and prints the directory that holds them all.
#
#   build/tools/build.sh            build what is missing, print the bin dir
#
# Each tool lands in $IDOPIPE_CACHE/tools/<tool>-<hash>, where <hash> covers
# its wrapper module (go.mod, go.sum), so a fresh clone reuses
# what an earlier run built and a changed pin rebuilds only that tool.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${IDOPIPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/idopipe}
mkdir -p "$cache/tools"

# shellcheck source=build/tools/lib.sh
. "$here/lib.sh"

bk_version=$(mod_version buildkit github.com/moby/buildkit)
kube_version=$(mod_version kube k8s.io/kubernetes)

cosign_version=$(mod_version cosign github.com/sigstore/cosign/v2)
cosign3_version=$(mod_version cosign3 github.com/sigstore/cosign/v3)
fulcio_version=$(mod_version fulcio github.com/sigstore/fulcio)
tsa_version=$(mod_version tsa github.com/sigstore/timestamp-authority/v2)
rekor_version=$(mod_version rekor github.com/sigstore/rekor-tiles/v2)
gh_version=$(mod_version gh github.com/cli/cli/v2)
rv=sigs.k8s.io/release-utils/version.gitVersion

# NAME OUT PKG LDFLAGS, one tool a line: `make tools` builds what the cache
# lacks and says which tool it is building and how many are left.
tools=(
  "etcd|etcd|go.etcd.io/etcd/server/v3|-s -w"
  "registry|registry|github.com/distribution/distribution/v3/cmd/registry|-s -w"
  "buildkit|buildkitd|github.com/moby/buildkit/cmd/buildkitd|-s -w -X github.com/moby/buildkit/version.Version=$bk_version"
  "buildkit|buildctl|github.com/moby/buildkit/cmd/buildctl|-s -w -X github.com/moby/buildkit/version.Version=$bk_version"
  "kube|kube-apiserver|k8s.io/kubernetes/cmd/kube-apiserver|$(ldflags_kube "$kube_version")"
  "kube|kube-scheduler|k8s.io/kubernetes/cmd/kube-scheduler|$(ldflags_kube "$kube_version")"
  "kube|kube-controller-manager|k8s.io/kubernetes/cmd/kube-controller-manager|$(ldflags_kube "$kube_version")"
  "kube|kubelet|k8s.io/kubernetes/cmd/kubelet|$(ldflags_kube "$kube_version")"
  "actionlint|actionlint|github.com/rhysd/actionlint/cmd/actionlint|-s -w"
  "cosign|cosign|github.com/sigstore/cosign/v2/cmd/cosign|-s -w -X $rv=$cosign_version"
  # The keyless stack (#21): Fulcio, the timestamp authority and Rekor v2
  # on loopback, and the peers that must accept idopipe's bundles.
  "fulcio|fulcio|github.com/sigstore/fulcio|-s -w -X $rv=$fulcio_version"
  "tsa|timestamp-server|github.com/sigstore/timestamp-authority/v2/cmd/timestamp-server|-s -w -X $rv=$tsa_version"
  "rekor|rekor-server|github.com/sigstore/rekor-tiles/v2/cmd/rekor-server/posix|-s -w -X $rv=$rekor_version"
  "cosign3|cosign3|github.com/sigstore/cosign/v3/cmd/cosign|-s -w -X $rv=$cosign3_version"
  "gh|gh|github.com/cli/cli/v2/cmd/gh|-s -w -X github.com/cli/cli/v2/internal/build.Version=${gh_version#v}"
  # The rootless builder image (moby/buildkit:<version>-rootless) runs
  # buildkitd under rootlesskit.
  "rootlesskit|rootlesskit|github.com/rootless-containers/rootlesskit/v3/cmd/rootlesskit|-s -w"
)
missing=()
for t in "${tools[@]}"; do
  IFS='|' read -r name out _ _ <<<"$t"
  [ -x "$(tool_dir "$name")/$out" ] || missing+=("$t")
done
n=0
for t in "${missing[@]}"; do
  n=$((n + 1))
  IFS='|' read -r name out pkg ldflags <<<"$t"
  echo "make tools: [$n/${#missing[@]}] $out ($(( ${#missing[@]} - n )) left after it)" >&2
  build "$name" "$out" "$pkg" "$ldflags"
done

# One directory of links to the current builds, named after all the hashes.
all=$(for t in etcd registry buildkit kube actionlint cosign fulcio tsa rekor cosign3 gh rootlesskit; do tool_dir $t; done | sha256sum | cut -c1-12)
bin="$cache/tools/bin-$all"
if [ ! -d "$bin" ]; then
  mkdir -p "$bin.tmp"
  for t in etcd:etcd registry:registry buildkit:buildkitd buildkit:buildctl kube:kube-apiserver kube:kube-scheduler kube:kube-controller-manager kube:kubelet actionlint:actionlint cosign:cosign fulcio:fulcio tsa:timestamp-server rekor:rekor-server cosign3:cosign3 gh:gh rootlesskit:rootlesskit; do
    ln -sf "$(tool_dir "${t%%:*}")/${t#*:}" "$bin.tmp/${t#*:}"
  done
  rm -rf "$bin"; mv "$bin.tmp" "$bin"
fi
echo "$bin"
