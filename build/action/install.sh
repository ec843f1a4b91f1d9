#!/usr/bin/env bash
# Step 1 of the idopipe action: install idopipe.
#
# The release asset of the action's ref for this runner (idopipe-OS-ARCH,
# as `make dist` names them), checked against the release's SHA256SUMS.
# When the ref has no release (a branch, a commit, `uses: ./`), idopipe is
# built from the action's own source, which the runner has checked out at
# $GITHUB_ACTION_PATH, with the Go toolchain on the runner.
#
# In:  GITHUB_ACTION_PATH, RUNNER_OS, RUNNER_ARCH, RUNNER_TEMP, GITHUB_OUTPUT,
#      GITHUB_PATH; IN_VERSION (a release tag; default the action's ref),
#      IN_ACTION_REF, IN_ACTION_REPOSITORY, IN_RELEASES_URL (https://github.com).
# Out: outputs path (the binary), version and from (release or source); the
#      binary's directory on GITHUB_PATH.
set -euo pipefail

fail() { echo "::error title=idopipe install::$*"; exit 1; }

src=${GITHUB_ACTION_PATH:?not run as a step of the action}
src=${src%/}
ref=${IN_VERSION:-${IN_ACTION_REF:-}}
repo=${IN_ACTION_REPOSITORY:-}
# The runner checks a remote action out at .../_actions/OWNER/REPO/REF; some
# runner versions leave github.action_ref empty inside composite actions.
case "$src" in
*/_actions/*/*/*)
	[ -n "$ref" ] || ref=$(basename "$src")
	[ -n "$repo" ] || repo=$(basename "$(dirname "$(dirname "$src")")")/$(basename "$(dirname "$src")")
	;;
esac

case "${RUNNER_OS:-Linux}" in
Linux) os=linux ;;
macOS) os=darwin ;;
*) fail "idopipe runs on Linux and macOS runners, not ${RUNNER_OS}" ;;
esac
case "${RUNNER_ARCH:-X64}" in
X64) arch=amd64 ;;
ARM64) arch=arm64 ;;
*) fail "idopipe is released for X64 and ARM64 runners, not ${RUNNER_ARCH}" ;;
esac

bin="${RUNNER_TEMP:?}/idopipe/bin"
mkdir -p "$bin"
asset="idopipe-$os-$arch"

sha256() {
	if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1; else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

# fetch URL FILE: prints the HTTP status (000 when no answer came).
fetch() {
	curl -sSL --retry 3 --retry-connrefused -o "$2" -w '%{http_code}' "$1" 2>"$2.err" || true
}

from=""
if [ -n "$ref" ] && [ -n "$repo" ]; then
	base="${IN_RELEASES_URL:-https://github.com}/$repo/releases/download/$ref"
	tmp=$(mktemp -d "${RUNNER_TEMP}/idopipe-dl.XXXXXX")
	status=$(fetch "$base/SHA256SUMS" "$tmp/SHA256SUMS")
	case "$status" in
	200)
		want=$(awk -v f="$asset" '$2 == f || $2 == "*" f { print $1 }' "$tmp/SHA256SUMS")
		[ -n "$want" ] || fail "release $ref of $repo has no $asset in its SHA256SUMS: use a ref released for this runner"
		status=$(fetch "$base/$asset" "$tmp/$asset")
		[ "$status" = 200 ] || fail "cannot download $base/$asset (HTTP $status): rerun, or check the release's assets"
		got=$(sha256 "$tmp/$asset")
		if [ "$got" != "$want" ]; then
			rm -rf "$tmp"
			fail "$asset of release $ref does not match its SHA256SUMS (sha256 $got, expected $want): the download is corrupt or was tampered with; nothing was installed"
		fi
		install -m 0755 "$tmp/$asset" "$bin/idopipe"
		from=release
		;;
	404)
		echo "::notice title=idopipe install::no idopipe release $ref of $repo: building idopipe from the action's source"
		;;
	*)
		fail "cannot download $base/SHA256SUMS (HTTP $status: $(tr '\n' ' ' <"$tmp/SHA256SUMS.err")): rerun, or check ${IN_RELEASES_URL:-https://github.com}"
		;;
	esac
	rm -rf "$tmp"
fi

if [ -z "$from" ]; then
	command -v go >/dev/null ||
		fail "no idopipe release for ref '${ref:-none}' and no Go on this runner: add actions/setup-go before this step, or use a released ref"
	[ -f "$src/go.mod" ] || fail "$src holds no idopipe source (go.mod)"
	(cd "$src" && CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X github.com/idopipe/idopipe/pkg/version.Version=${ref:-devel}" \
		-o "$bin/idopipe" ./cmd/idopipe) || fail "go build of idopipe from $src failed"
	from=source
fi

version=$("$bin/idopipe" version 2>/dev/null | head -n1 || true)
echo "$bin" >>"${GITHUB_PATH:?}"
{
	echo "path=$bin/idopipe"
	echo "from=$from"
	echo "version=$version"
} >>"${GITHUB_OUTPUT:?}"
echo "installed ${version:-idopipe} ($from) at $bin/idopipe"
