#!/usr/bin/env bash
# Run the kind end-to-end tests (`pytest tests/e2e -m kind`) against the gateway installed by
# k8s/kind-up.sh. TS_SEGMENTER_URL points the tests at the gateway.
#
# Usage: k8s/kind-e2e.sh [extra pytest args]       (or: make kind-e2e)
# Needs: kubectl, curl, and the project's Python (.venv/bin/python, else python3).
#
# Environment (all optional):
#   CLUSTER_NAME, NAMESPACE, RELEASE   as in kind-up.sh (defaults: ts-segmenter)
#   E2E_VIA_INGRESS=1   use the ingress (http://localhost:${KIND_HTTP_PORT:-9090}) instead of a
#                       kubectl port-forward to the gateway Service
#   LOCAL_PORT          local port of the port-forward (default: 19090)
#   PYTHON              interpreter that runs pytest
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_NAME="${CLUSTER_NAME:-ts-segmenter}"
NAMESPACE="${NAMESPACE:-ts-segmenter}"
RELEASE="${RELEASE:-ts-segmenter}"
LOCAL_PORT="${LOCAL_PORT:-19090}"
CONTEXT="kind-${CLUSTER_NAME}"

log() { printf '\033[1m[kind-e2e]\033[0m %s\n' "$*" >&2; }
die() { printf '[kind-e2e] ERROR: %s\n' "$*" >&2; exit 1; }

require() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 \
            || die "'$tool' is not installed or not on PATH; kind-e2e needs kubectl and curl (and a cluster from k8s/kind-up.sh)"
    done
}

require kubectl curl
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON="python3"; fi
fi
require "$PYTHON"
kubectl config get-contexts -o name | grep -qx "$CONTEXT" \
    || die "no kube context '$CONTEXT': create the cluster with k8s/kind-up.sh first"

kc() { kubectl --context "$CONTEXT" --namespace "$NAMESPACE" "$@"; }

selector="app.kubernetes.io/instance=${RELEASE},app.kubernetes.io/component=gateway"
kc rollout status deployment -l "$selector" --timeout=300s >/dev/null 2>&1 \
    || kc wait --for=condition=Available deployment -l "$selector" --timeout=300s

# wait_healthy URL: poll /health for at most 60 s (the service may need a moment after rollout).
wait_healthy() {
    local url="$1" _
    for _ in $(seq 1 60); do
        if curl -fsS --max-time 2 "$url/health" >/dev/null 2>&1; then
            return 0
        fi
        sleep 1
    done
    die "the gateway at $url did not answer /health within 60 s"
}

if [[ "${E2E_VIA_INGRESS:-0}" == "1" ]]; then
    url="http://localhost:${KIND_HTTP_PORT:-9090}"
else
    service="$(kc get service -l "$selector" -o jsonpath='{.items[0].metadata.name}')"
    [[ -n "$service" ]] || die "no gateway Service for release '$RELEASE' in namespace '$NAMESPACE'"
    port="$(kc get service "$service" -o jsonpath='{.spec.ports[0].port}')"
    log "port-forwarding svc/$service:$port to 127.0.0.1:$LOCAL_PORT"
    kc port-forward --address 127.0.0.1 "service/$service" "${LOCAL_PORT}:${port}" >/dev/null 2>&1 &
    forward_pid=$!
    trap 'kill "$forward_pid" 2>/dev/null || true' EXIT
    url="http://127.0.0.1:${LOCAL_PORT}"
fi

wait_healthy "$url"
log "running the kind e2e tests against $url"
cd "$ROOT"
TS_SEGMENTER_URL="$url" KIND_CLUSTER="$CLUSTER_NAME" KUBE_CONTEXT="$CONTEXT" TS_SEGMENTER_NAMESPACE="$NAMESPACE" \
    "$PYTHON" -m pytest tests/e2e -m kind "$@"
