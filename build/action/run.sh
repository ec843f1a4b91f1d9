#!/usr/bin/env bash
# Step 3 of the idopipe action: the release.
#
# Turns the action's inputs into one `idopipe release` command line: build
# (BuildKit, with a registry build cache under the image's :buildcache tag
# by default), push, verify-pull and, when a kubeconfig is given, secret,
# apply and wait. idopipe itself masks the token, groups each stage, writes
# ::error annotations, the job summary and the outputs image, digest, ref
# and pods-ready.
#
# In:  GITHUB_TOKEN and GITHUB_ACTOR (from the token and username inputs,
#      never on a command line), RUNNER_TEMP, GITHUB_REF_TYPE, GITHUB_REF_NAME,
#      GITHUB_SHA; IN_* (one per input, see action.yml), IN_IDOPIPE (the
#      binary), IN_BUILDKIT_HOST (the daemon).
set -euo pipefail

# The token is masked before anything else is printed (the runner masks
# github.token itself, but not a token passed in as an input).
if [ -n "${GITHUB_TOKEN:-}" ]; then
	echo "::add-mask::$GITHUB_TOKEN"
fi

fail() { echo "::error title=idopipe::$*"; exit 2; }

# lines VALUE: one item per line or comma, trimmed, empty ones dropped.
lines() {
	printf '%s\n' "$1" | tr ',' '\n' | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' | grep -v '^$' || true
}

[ -n "${GITHUB_TOKEN:-}" ] || fail "no token: pass the token input (default github.token) with packages: write"
idopipe=${IN_IDOPIPE:-idopipe}
version=${IN_VERSION:-}
if [ -z "$version" ]; then
	if [ "${GITHUB_REF_TYPE:-}" = tag ]; then
		version=$GITHUB_REF_NAME
	else
		version="sha-${GITHUB_SHA:0:7}"
	fi
fi
owner=${IN_OWNER:-${GITHUB_REPOSITORY_OWNER:-}}
registry=${IN_REGISTRY:-ghcr.io}
image=${IN_IMAGE_NAME:-planner}

args=(release --source "${IN_SOURCE:-.}" --registry "$registry" --owner "$owner"
	--image-name "$image" --version "$version" -n "${IN_NAMESPACE:-ido}" --progress plain)
[ -z "${IN_FILE:-}" ] || args+=(--file "$IN_FILE")
[ -z "${IN_BUILDKIT_HOST:-}" ] || args+=(--buildkit-host "$IN_BUILDKIT_HOST")
[ -z "${IN_REGISTRY_CA:-}" ] || args+=(--registry-ca "$IN_REGISTRY_CA")
while read -r v; do args+=(--tag "$v"); done < <(lines "${IN_TAGS:-}")
while read -r v; do args+=(--platform "$v"); done < <(lines "${IN_PLATFORMS:-}")
while read -r v; do args+=(--manifest "$v"); done < <(lines "${IN_MANIFESTS:-}")
while read -r v; do args+=(--crds "$v"); done < <(lines "${IN_CRDS:-}")
# One per line: an --extra-image value holds commas itself.
while read -r v; do [ -z "$v" ] || args+=(--extra-image "$v"); done < <(printf '%s\n' "${IN_EXTRA_IMAGES:-}")
while read -r v; do [ -z "$v" ] || args+=(--build-arg "$v"); done < <(printf '%s\n' "${IN_BUILD_ARGS:-}")

case "${IN_CACHE:-registry}" in
registry)
	cache="$registry/$(printf '%s' "$owner" | tr '[:upper:]' '[:lower:]')/$image:buildcache"
	args+=(--cache-from "type=registry,ref=$cache" --cache-to "type=registry,ref=$cache,mode=max")
	;;
# none: no cache at all, also on a kube:// builder (whose default is the
# registry cache).
none | "") args+=(--cache-to none) ;;
*) fail "cache input '${IN_CACHE}': use registry (a :buildcache tag beside the image) or none" ;;
esac

# A kubeconfig, as a file path or as its content (a secret), makes the
# cluster stages run; without one the release stops after verify-pull.
stages=$(lines "${IN_STAGES:-}" | tr '\n' ' ')
if [ -n "${IN_KUBECONFIG:-}" ]; then
	if [ -f "$IN_KUBECONFIG" ]; then
		kubeconfig=$IN_KUBECONFIG
	else
		kubeconfig="${RUNNER_TEMP:?}/idopipe-kubeconfig"
		(umask 077 && printf '%s\n' "$IN_KUBECONFIG" >"$kubeconfig")
	fi
	args+=(--kubeconfig "$kubeconfig")
	[ -z "${IN_CONTEXT:-}" ] || args+=(--context "$IN_CONTEXT")
	case "${IN_ROLLBACK_ON_FAILURE:-false}" in
	true) args+=(--rollback-on-failure) ;;
	false | "") ;;
	*) fail "rollback-on-failure input '${IN_ROLLBACK_ON_FAILURE}': use true or false" ;;
	esac
	[ -z "${IN_HISTORY_MAX:-}" ] || args+=(--history-max "$IN_HISTORY_MAX")
elif [ -z "$stages" ]; then
	stages="validate build push verify-pull"
fi
if [ -n "$stages" ]; then
	skip=()
	for s in validate build push verify-pull secret apply wait; do
		case " $stages " in
		*" $s "*) ;;
		*) [ "$s" = validate ] || skip+=("$s") ;;
		esac
	done
	for s in $stages; do
		case "$s" in
		validate | build | push | verify-pull) ;;
		secret | apply | wait) [ -n "${IN_KUBECONFIG:-}" ] || fail "stage $s needs a cluster: pass the kubeconfig input (a secret holding one)" ;;
		*) fail "stages input: unknown stage '$s': use validate, build, push, verify-pull, secret, apply, wait" ;;
		esac
	done
	[ ${#skip[@]} -eq 0 ] || args+=(--skip "$(
		IFS=,
		echo "${skip[*]}"
	)")
fi
# Keyless signing takes the job's OIDC token from the runner
# ($ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN, there with id-token: write), never
# from a command line; the verify policy gates the deploy.
case "${IN_SIGN:-false}" in
true) args+=(--sign --sigstore "${IN_SIGSTORE:-public-good}") ;;
false | "") ;;
*) fail "sign input '${IN_SIGN}': use true or false" ;;
esac
[ -z "${IN_TRUSTED_ROOT:-}" ] || args+=(--trusted-root "$IN_TRUSTED_ROOT")
[ -z "${IN_CERTIFICATE_IDENTITY:-}" ] || args+=(--certificate-identity "$IN_CERTIFICATE_IDENTITY")
[ -z "${IN_CERTIFICATE_IDENTITY_REGEXP:-}" ] || args+=(--certificate-identity-regexp "$IN_CERTIFICATE_IDENTITY_REGEXP")
[ -z "${IN_CERTIFICATE_OIDC_ISSUER:-}" ] || args+=(--certificate-oidc-issuer "$IN_CERTIFICATE_OIDC_ISSUER")
[ -z "${IN_SIGNER_REPO:-}" ] || args+=(--signer-repo "$IN_SIGNER_REPO")
[ -z "${IN_SIGNER_WORKFLOW:-}" ] || args+=(--signer-workflow "$IN_SIGNER_WORKFLOW")
while read -r v; do [ -z "$v" ] || args+=("$v"); done < <(printf '%s\n' "${IN_ARGS:-}")

# The command line holds no secret: the token is in $GITHUB_TOKEN.
echo "idopipe ${args[*]}"
exec "$idopipe" "${args[@]}"
