#!/usr/bin/env bash
# The peer of `idopipe deploy` in the benchmarks: the same steps with kubectl
# alone, as a release script would do them. Namespace, image-pull Secret (from
# a docker config.json, so the token is never on a command line), the CRDs
# (waiting until Established), the upstream manifest rewritten with sed
# (namespace, planner image, imagePullSecrets on its ServiceAccount) and
# server-side applied, then wait until every Pod is Ready.
#
# Environment: KUBECTL, KUBECONFIG, NS, IMAGE, MANIFEST, CRDS, DOCKER_CONFIG,
# SECRET_NAME (default ghcr-secret).
set -euo pipefail
k=${KUBECTL:-kubectl}
secret=${SECRET_NAME:-ghcr-secret}
sa='^  name: planner-service-account$'

"$k" create namespace "$NS" --dry-run=client -o yaml | "$k" apply --server-side -f -
"$k" create secret generic "$secret" -n "$NS" --type=kubernetes.io/dockerconfigjson \
  --from-file=.dockerconfigjson="$DOCKER_CONFIG/config.json" --dry-run=client -o yaml |
  "$k" apply --server-side -f -
"$k" apply --server-side -f "$CRDS"
"$k" wait --for=condition=Established --timeout=60s -f "$CRDS"
sed -e "s|namespace: ido\$|namespace: $NS|" \
    -e "s|image: 127.0.0.1:5000/planner:0.4.0|image: $IMAGE|" \
    -e "/$sa/a imagePullSecrets:" -e "/$sa/a - name: $secret" "$MANIFEST" |
  "$k" apply --server-side -n "$NS" -f -
"$k" wait --for=condition=Ready --timeout=120s -n "$NS" pod --all
