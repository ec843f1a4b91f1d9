#!/usr/bin/env bash
# `make bench`: idopipe side by side with crane, skopeo, buildctl, kubectl and
# a bash release script, on a fresh local stack. Writes
# build/bench/results/bench.md and bench.json. Extra arguments go to the
# harness (build/bench/main.go), e.g. `make bench BENCH_FLAGS="-runs 3"`.
#
# Needs what `make tools build` provides (the stack's tools, bin/idopipe);
# this script adds Debian's skopeo and the peers crane and kubectl, built from
# build/tools/crane and build/tools/kubectl and cached like the stack's tools.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
start=$SECONDS

# Debian packages of the benchmark itself (the stack's come from `make deps`).
missing=""
for p in skopeo; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing Debian packages:$missing" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

tools=$(build/tools/build.sh)
peers=$(build/bench/tools.sh)
[ -x bin/idopipe ] || { echo "bin/idopipe is missing: run make build" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/bench" ./build/bench
echo "bench: prepared in $((SECONDS - start))s" >&2

IDOPIPE_TOOLS_BIN=$tools go run ./cmd/localstack -kube-builder -- \
  "$tmp/bench" -idopipe bin/idopipe -peers "$peers" -tools "$tools" \
  -scripts build/bench -out build/bench/results "$@"
echo "bench: done in $((SECONDS - start))s" >&2
