#!/usr/bin/env bash
# Create a local kind cluster with cert-manager, KServe (Standard mode) and ingress-nginx, build
# the ts-segmenter image, load it into the cluster and install the chart with k8s/kind-values.yaml.
#
# Usage: k8s/kind-up.sh            (or: make kind-up)
# Needs: docker (running), kind, helm (v3.8+ for OCI charts), kubectl. Re-running is safe: every
# step is an idempotent apply/upgrade, and an existing cluster is reused.
#
# Environment (all optional):
#   CLUSTER_NAME          kind cluster name                  (default: ts-segmenter)
#   KIND_NODE_IMAGE       kindest/node image                 (default: the one in kind-config.yaml)
#   NAMESPACE, RELEASE    where/how the chart is installed   (default: ts-segmenter, ts-segmenter)
#   IMAGE_REPOSITORY, IMAGE_TAG   image built and loaded     (default: ts-segmenter, dev)
#   TORCH_VARIANT         Docker build arg (cpu | cu126 ...) (default: cpu)
#   CERT_MANAGER_VERSION  (default: v1.17.0)  KSERVE_VERSION (default: v0.17.1, needs >= v0.16)
#   KSERVE_CHART          KServe's controller chart (default: kserve up to v0.16, kserve-resources after)
#   INGRESS_NGINX_VERSION ingress-nginx controller tag       (default: controller-v1.12.1)
#   LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY   passed to the chart when set
#   KSERVE_HELM_ARGS      more arguments for `helm upgrade --install` of KServe's controller chart
#   HELM_EXTRA_ARGS       more arguments for `helm upgrade --install` of the chart
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_NAME="${CLUSTER_NAME:-ts-segmenter}"
NAMESPACE="${NAMESPACE:-ts-segmenter}"
RELEASE="${RELEASE:-ts-segmenter}"
IMAGE_REPOSITORY="${IMAGE_REPOSITORY:-ts-segmenter}"
IMAGE_TAG="${IMAGE_TAG:-dev}"
TORCH_VARIANT="${TORCH_VARIANT:-cpu}"
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.17.0}"
KSERVE_VERSION="${KSERVE_VERSION:-v0.17.1}"
INGRESS_NGINX_VERSION="${INGRESS_NGINX_VERSION:-controller-v1.12.1}"
CONTEXT="kind-${CLUSTER_NAME}"

log() { printf '\033[1m[kind-up]\033[0m %s\n' "$*" >&2; }
die() { printf '[kind-up] ERROR: %s\n' "$*" >&2; exit 1; }

require() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 \
            || die "'$tool' is not installed or not on PATH; kind-up needs docker, kind, helm and kubectl (see https://kind.sigs.k8s.io/docs/user/quick-start/)"
    done
}

require docker kind helm kubectl
docker info >/dev/null 2>&1 || die "the Docker engine is not running (docker info failed)"

# KServe's Helm chart for the controller is called "kserve" up to v0.16 and "kserve-resources" after.
case "$KSERVE_VERSION" in
    v0.1[0-5].*) die "KSERVE_VERSION=$KSERVE_VERSION: ts-segmenter needs KServe v0.16 or newer" ;;
    v0.16.*) KSERVE_CHART="${KSERVE_CHART:-kserve}" ;;
    *) KSERVE_CHART="${KSERVE_CHART:-kserve-resources}" ;;
esac

kc() { kubectl --context "$CONTEXT" "$@"; }

# 1. Cluster ------------------------------------------------------------------------------------
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    log "reusing kind cluster '$CLUSTER_NAME'"
else
    log "creating kind cluster '$CLUSTER_NAME'"
    create_args=(--name "$CLUSTER_NAME" --config "$ROOT/k8s/kind-config.yaml" --wait 120s)
    if [[ -n "${KIND_NODE_IMAGE:-}" ]]; then
        create_args+=(--image "$KIND_NODE_IMAGE")
    fi
    kind create cluster "${create_args[@]}"
fi

# 2. cert-manager (KServe's webhooks need certificates) ----------------------------------------
log "installing cert-manager $CERT_MANAGER_VERSION"
kc apply -f "https://github.com/cert-manager/cert-manager/releases/download/${CERT_MANAGER_VERSION}/cert-manager.yaml"
kc -n cert-manager wait --for=condition=Available deployment --all --timeout=300s

# 3. ingress-nginx, kind flavour (binds the node's ports 80/443, published by kind-config.yaml) --
log "installing ingress-nginx $INGRESS_NGINX_VERSION"
kc apply -f "https://raw.githubusercontent.com/kubernetes/ingress-nginx/${INGRESS_NGINX_VERSION}/deploy/static/provider/kind/deploy.yaml"
kc -n ingress-nginx wait --for=condition=Ready pod -l app.kubernetes.io/component=controller --timeout=300s

# 4. KServe in Standard mode (plain Deployments; no Knative, no Istio) ---------------------------
log "installing KServe $KSERVE_VERSION (Standard mode)"
helm --kube-context "$CONTEXT" upgrade --install kserve-crd oci://ghcr.io/kserve/charts/kserve-crd \
    --version "$KSERVE_VERSION" --namespace kserve --create-namespace --wait
# shellcheck disable=SC2206 # KSERVE_HELM_ARGS is split on purpose
kserve_args=(--set kserve.controller.deploymentMode=Standard ${KSERVE_HELM_ARGS:-})
helm --kube-context "$CONTEXT" upgrade --install kserve "oci://ghcr.io/kserve/charts/${KSERVE_CHART}" \
    --version "$KSERVE_VERSION" --namespace kserve --create-namespace \
    "${kserve_args[@]}" --wait --timeout 10m

# 5. Image ---------------------------------------------------------------------------------------
log "building ${IMAGE_REPOSITORY}:${IMAGE_TAG} (torch variant ${TORCH_VARIANT})"
docker build --build-arg "TORCH_VARIANT=${TORCH_VARIANT}" -t "${IMAGE_REPOSITORY}:${IMAGE_TAG}" "$ROOT"
kind load docker-image --name "$CLUSTER_NAME" "${IMAGE_REPOSITORY}:${IMAGE_TAG}"

# 6. The chart -----------------------------------------------------------------------------------
chart_args=(
    --namespace "$NAMESPACE" --create-namespace
    --values "$ROOT/k8s/kind-values.yaml"
    --set-string "image.repository=${IMAGE_REPOSITORY}"
    --set-string "image.tag=${IMAGE_TAG}"
    --wait --timeout 10m
)
if [[ -n "${LABEL_STUDIO_URL:-}" ]]; then
    chart_args+=(--set-string "labelStudio.url=${LABEL_STUDIO_URL}")
fi
if [[ -n "${LABEL_STUDIO_API_KEY:-}" ]]; then
    chart_args+=(--set-string "labelStudio.apiKey=${LABEL_STUDIO_API_KEY}")
fi
# shellcheck disable=SC2206 # HELM_EXTRA_ARGS is split on purpose
chart_args+=(${HELM_EXTRA_ARGS:-})
log "installing the chart as release '$RELEASE' in namespace '$NAMESPACE'"
helm --kube-context "$CONTEXT" upgrade --install "$RELEASE" "$ROOT/charts/ts-segmenter" "${chart_args[@]}"
helm --kube-context "$CONTEXT" test "$RELEASE" --namespace "$NAMESPACE" --logs

log "ready: the gateway answers at http://localhost:9090 (try: curl http://localhost:9090/health)"
log "end-to-end tests: k8s/kind-e2e.sh; tear down: k8s/kind-down.sh"
