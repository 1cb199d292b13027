#!/usr/bin/env bash
# Delete the kind cluster created by k8s/kind-up.sh (and everything in it).
#
# Usage: k8s/kind-down.sh          (or: make kind-down)
# Needs: kind (and docker running). CLUSTER_NAME as in kind-up.sh (default: ts-segmenter).
set -euo pipefail

CLUSTER_NAME="${CLUSTER_NAME:-ts-segmenter}"

die() { printf '[kind-down] ERROR: %s\n' "$*" >&2; exit 1; }

for tool in docker kind; do
    command -v "$tool" >/dev/null 2>&1 \
        || die "'$tool' is not installed or not on PATH; kind-down needs docker and kind"
done

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    kind delete cluster --name "$CLUSTER_NAME"
else
    printf '[kind-down] no kind cluster named %s; nothing to do\n' "$CLUSTER_NAME" >&2
fi
