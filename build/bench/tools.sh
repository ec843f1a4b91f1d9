#!/usr/bin/env bash
# Builds the benchmark's peer tools (crane, kubectl) from the wrapper modules
# build/tools/crane and build/tools/kubectl, cached like build/tools/build.sh
# does: $IDOPIPE_CACHE/tools/<name>-<hash of go.mod+go.sum>. Prints the
# directory holding links to both.
set -euo pipefail
tools=$(cd "$(dirname "$0")/../tools" && pwd)
cache=${IDOPIPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/idopipe}
mkdir -p "$cache/tools"

# shellcheck source=build/tools/lib.sh
here=$tools
. "$tools/lib.sh"

crane_version=$(mod_version crane github.com/google/go-containerregistry)
kube_version=$(mod_version kubectl k8s.io/kubernetes)

build crane crane github.com/google/go-containerregistry/cmd/crane \
  "-s -w -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$crane_version"
build kubectl kubectl k8s.io/kubernetes/cmd/kubectl \
  "$(ldflags_kube "$kube_version")"

all=$(for t in crane kubectl; do tool_dir $t; done | sha256sum | cut -c1-12)
bin="$cache/tools/benchbin-$all"
if [ ! -d "$bin" ]; then
  mkdir -p "$bin.tmp"
  ln -sf "$(tool_dir crane)/crane" "$bin.tmp/crane"
  ln -sf "$(tool_dir kubectl)/kubectl" "$bin.tmp/kubectl"
  rm -rf "$bin"; mv "$bin.tmp" "$bin"
fi
echo "$bin"
