#!/usr/bin/env bash
# Builds the benchmark's peer tools (crane, kubectl) from the wrapper modules
# build/tools/crane and build/tools/kubectl, cached like build/tools/build.sh
# does: $IDOPIPE_CACHE/tools/<name>-<hash of go.mod+go.sum>. Prints the
# directory holding links to both.
set -euo pipefail
tools=$(cd "$(dirname "$0")/../tools" && pwd)
cache=${IDOPIPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/idopipe}
mkdir -p "$cache/tools"

tool_dir() {
  local h
  h=$(cat "$tools/$1/go.mod" "$tools/$1/go.sum" | sha256sum | cut -c1-12)
  echo "$cache/tools/$1-$h"
}

build() {
  local name=$1 out=$2 pkg=$3 ldflags=${4:--s -w}
  local dir; dir=$(tool_dir "$name")
  [ -x "$dir/$out" ] && return 0
  mkdir -p "$dir"
  echo "building $out ($pkg) into $dir" >&2
  local start=$SECONDS
  (cd "$tools/$name" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$dir/$out.tmp" "$pkg")
  mv "$dir/$out.tmp" "$dir/$out"
  echo "built $out in $((SECONDS - start))s" >&2
}

mod_version() { (cd "$tools/$1" && go list -m -f '{{.Version}}' "$2"); }
crane_version=$(mod_version crane github.com/google/go-containerregistry)
kube_version=$(mod_version kubectl k8s.io/kubernetes)
kminor=${kube_version#v1.}; kminor=${kminor%%.*}
kv=k8s.io/component-base/version

build crane crane github.com/google/go-containerregistry/cmd/crane \
  "-s -w -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$crane_version"
build kubectl kubectl k8s.io/kubernetes/cmd/kubectl \
  "-s -w -X $kv.gitVersion=$kube_version -X $kv.gitMajor=1 -X $kv.gitMinor=$kminor -X $kv.gitTreeState=clean"

all=$(for t in crane kubectl; do tool_dir $t; done | sha256sum | cut -c1-12)
bin="$cache/tools/benchbin-$all"
if [ ! -d "$bin" ]; then
  mkdir -p "$bin.tmp"
  ln -sf "$(tool_dir crane)/crane" "$bin.tmp/crane"
  ln -sf "$(tool_dir kubectl)/kubectl" "$bin.tmp/kubectl"
  rm -rf "$bin"; mv "$bin.tmp" "$bin"
fi
echo "$bin"
