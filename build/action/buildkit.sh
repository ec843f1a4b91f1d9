#!/usr/bin/env bash
# Step 2 of the idopipe action: a BuildKit daemon, in seconds.
#
# With IN_BUILDKIT_HOST (say docker/setup-buildx-action's builder as
# docker-container://buildx_buildkit_NAME0) that daemon is used. Otherwise
# buildkitd and buildctl come from BuildKit's release tarball (pinned by
# IN_BUILDKIT_VERSION, checked against IN_BUILDKIT_SHA256 when given) and
# buildkitd runs as root (sudo when the runner user is not root) with the
# OCI worker and runc, on a unix socket owned by the runner user.
#
# In:  RUNNER_TEMP, RUNNER_ARCH, GITHUB_OUTPUT, GITHUB_ENV; IN_BUILDKIT_HOST,
#      IN_BUILDKIT_VERSION, IN_BUILDKIT_SHA256, IN_BUILDKITD_CONFIG (TOML
#      appended to the daemon's config), IN_RELEASES_URL.
# Out: output address; BUILDKIT_HOST in GITHUB_ENV for later steps. The
#      daemon's pid is in $RUNNER_TEMP/buildkitd/buildkitd.pid, its log
#      beside it; the runner ends it with the job.
set -euo pipefail

fail() { echo "::error title=idopipe buildkit::$*"; exit 1; }

if [ -n "${IN_BUILDKIT_HOST:-}" ]; then
	echo "address=$IN_BUILDKIT_HOST" >>"${GITHUB_OUTPUT:?}"
	echo "using the BuildKit daemon at $IN_BUILDKIT_HOST"
	exit 0
fi

[ "$(uname -s)" = Linux ] || fail "buildkitd runs on Linux runners only: pass buildkit-host (a remote or docker-container:// daemon)"
case "${RUNNER_ARCH:-X64}" in
X64) arch=amd64 ;;
ARM64) arch=arm64 ;;
*) fail "no BuildKit release for ${RUNNER_ARCH} runners: pass buildkit-host" ;;
esac
v=${IN_BUILDKIT_VERSION:-v0.34.2}
state="${RUNNER_TEMP:?}/buildkitd"
sock="$state/buildkitd.sock"
addr="unix://$sock"
mkdir -p "$state"

tarball="buildkit-$v.linux-$arch.tar.gz"
url="${IN_RELEASES_URL:-https://github.com}/moby/buildkit/releases/download/$v/$tarball"
dir="${RUNNER_TEMP}/buildkit-$v"
start=$(date +%s.%N)
if [ ! -x "$dir/bin/buildkitd" ]; then
	mkdir -p "$dir"
	status=$(curl -sSL --retry 3 --retry-connrefused -o "$dir/$tarball" -w '%{http_code}' "$url" 2>"$dir/curl.err" || true)
	[ "$status" = 200 ] || fail "cannot download BuildKit $v from $url (HTTP $status: $(tr '\n' ' ' <"$dir/curl.err")): check buildkit-version, or rerun"
	if [ -n "${IN_BUILDKIT_SHA256:-}" ]; then
		got=$(sha256sum "$dir/$tarball" | cut -d' ' -f1)
		[ "$got" = "$IN_BUILDKIT_SHA256" ] || {
			rm -f "$dir/$tarball"
			fail "$tarball does not match buildkit-sha256 (sha256 $got, expected $IN_BUILDKIT_SHA256): the download is corrupt or was tampered with"
		}
	fi
	tar -xzf "$dir/$tarball" -C "$dir" bin/buildkitd bin/buildctl $(tar -tzf "$dir/$tarball" | grep -x 'bin/buildkit-runc' || true) ||
		fail "$tarball holds no bin/buildkitd and bin/buildctl"
	rm -f "$dir/$tarball"
fi

# runc: BuildKit's own when the release carries it, else the runner's (the
# GitHub-hosted Ubuntu images have it with Docker's containerd).
runc="$dir/bin/buildkit-runc"
if [ ! -x "$runc" ]; then
	runc=$(PATH="$PATH:/usr/sbin:/sbin" command -v runc || true)
	[ -n "$runc" ] || fail "buildkitd needs runc, which is not on this runner: install it (sudo apt-get install -y runc), or pass buildkit-host"
fi

cat >"$state/buildkitd.toml" <<TOML
# The idopipe action's buildkitd.
root = "$state/root"
[grpc]
  address = ["$addr"]
[worker.oci]
  enabled = true
  binary = "$runc"
  gc = true
[worker.containerd]
  enabled = false
${IN_BUILDKITD_CONFIG:-}
TOML

sudo=""
if [ "$(id -u)" != 0 ]; then
	sudo="sudo -n"
	$sudo true 2>/dev/null || fail "buildkitd runs as root and the runner user cannot sudo: pass buildkit-host"
fi
rm -f "$sock" "$state/buildkitd.pid"
# setsid -f: the daemon runs in a session of its own and outlives this step
# (and sudo, which returns at once); its pid goes to the pid file, and its
# output straight to the log, not through sudo's terminal.
$sudo setsid -f sh -c 'echo $$ >"$1"; log=$2; shift 2; exec "$@" </dev/null >"$log" 2>&1' sh \
	"$state/buildkitd.pid" "$state/buildkitd.log" "$dir/bin/buildkitd" --config "$state/buildkitd.toml" </dev/null >/dev/null 2>&1
for _ in $(seq 300); do
	if [ -S "$sock" ] && $sudo "$dir/bin/buildctl" --addr "$addr" debug workers >/dev/null 2>&1; then
		break
	fi
	pid=$(cat "$state/buildkitd.pid" 2>/dev/null || true)
	if [ -n "$pid" ] && [ ! -e "/proc/$pid" ]; then
		fail "buildkitd exited while starting: $(tail -n1 "$state/buildkitd.log")"
	fi
	sleep 0.1
done
[ -S "$sock" ] || fail "buildkitd did not answer at $addr within 30s: see $state/buildkitd.log"
$sudo chown "$(id -u):$(id -g)" "$sock"
"$dir/bin/buildctl" --addr "$addr" debug workers >/dev/null ||
	fail "buildkitd answers root but not the runner user at $addr"

echo "address=$addr" >>"${GITHUB_OUTPUT:?}"
echo "BUILDKIT_HOST=$addr" >>"${GITHUB_ENV:?}"
echo "buildkitd $v (pid $(cat "$state/buildkitd.pid")) answers at $addr, $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')s after the step started"
