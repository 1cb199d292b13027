#!/usr/bin/env bash
# Install a real Label Studio for the end-to-end tests, and prepare a migrated template data dir.
#
# Idempotent and safe to run concurrently (flock). Creates, under
# ${TS_SEGMENTER_CACHE:-$HOME/.cache/ts-segmenter}:
#   ls-venv-1.23.2/            its own venv: label-studio==1.23.2 label-studio-sdk==2.1.2
#                              (kept out of the project's venv: its pins are not ours)
#   ls-data-template-1.23.2/   a data dir on which LS has already run its migrations (~90 s cold),
#                              with the admin user, a fixed legacy API token and legacy tokens enabled.
#                              Tests copy it to a fresh temp dir and start LS in a few seconds.
#                              credentials: ls-data-template-1.23.2/ts-segmenter-credentials.json
#
# The template is built in a temp dir, then a COPY of it under a different path is started and its
# legacy token is checked against the API before the template is published (atomic rename).
#
# Env: TS_SEGMENTER_CACHE (cache root), TS_SEGMENTER_LS_PYTHON (interpreter for the venv, default
# python3.11 or python3), TS_SEGMENTER_LS_START_TIMEOUT (seconds to wait for /health, default 600).
set -euo pipefail

LS_VERSION=1.23.2
SDK_VERSION=2.1.2
CACHE="${TS_SEGMENTER_CACHE:-$HOME/.cache/ts-segmenter}"
VENV="$CACHE/ls-venv-$LS_VERSION"
TEMPLATE="$CACHE/ls-data-template-$LS_VERSION"
CREDENTIALS_FILE=ts-segmenter-credentials.json
START_TIMEOUT="${TS_SEGMENTER_LS_START_TIMEOUT:-600}"

# Fixed loopback-only test credentials (the LS instances built from the template listen on 127.0.0.1).
LS_ADMIN_EMAIL=admin@example.com
LS_ADMIN_PASSWORD=ts-segmenter-e2e-password
LS_ADMIN_TOKEN=ts-segmenter-e2e-legacy-token-0001   # 6..40 chars

log() { printf '[install-label-studio] %s\n' "$*" >&2; }

mkdir -p "$CACHE"
exec 9>"$CACHE/.install-label-studio.lock"
if ! flock -w 1800 9; then
    log "could not take the lock $CACHE/.install-label-studio.lock within 1800 s"
    exit 1
fi

# ---------------------------------------------------------------- venv
venv_ok() {
    [ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/label-studio" ] &&
        "$VENV/bin/python" - "$LS_VERSION" "$SDK_VERSION" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
assert version("label-studio") == sys.argv[1], version("label-studio")
assert version("label-studio-sdk") == sys.argv[2], version("label-studio-sdk")
import label_studio, label_studio_sdk  # noqa: F401
PY
}

if venv_ok; then
    log "venv present: $VENV"
else
    PY="${TS_SEGMENTER_LS_PYTHON:-}"
    if [ -z "$PY" ]; then
        if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
    fi
    log "creating venv $VENV with $PY (pip install label-studio==$LS_VERSION label-studio-sdk==$SDK_VERSION, ~3 min)"
    t0=$SECONDS
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    if ! "$VENV/bin/python" -m pip install --quiet "label-studio==$LS_VERSION" "label-studio-sdk==$SDK_VERSION" \
        >"$CACHE/ls-venv-install.log" 2>&1; then
        log "pip install failed; tail of $CACHE/ls-venv-install.log:"
        grep -v "is ignored: it is neither a file nor a directory" "$CACHE/ls-venv-install.log" | tail -n 40 >&2 || true
        rm -rf "$VENV"
        exit 1
    fi
    venv_ok || { log "venv $VENV is broken after install"; exit 1; }
    log "venv ready in $((SECONDS - t0)) s"
fi

# ---------------------------------------------------------------- LS start/stop helpers
free_port() {
    "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

LS_PID=""
stop_ls() {
    if [ -n "$LS_PID" ] && kill -0 "$LS_PID" 2>/dev/null; then
        kill -TERM "$LS_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do   # poll up to ~10 s for the process to exit
            kill -0 "$LS_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$LS_PID" 2>/dev/null || true
        wait "$LS_PID" 2>/dev/null || true
    fi
    LS_PID=""
}

# start_ls DATA_DIR PORT LOGFILE: start LS in the background, set LS_PID, wait for /health.
start_ls() {
    local data_dir="$1" port="$2" logfile="$3" deadline
    (
        unset HOST PORT USERNAME PASSWORD DEBUG
        cd "$data_dir"
        export LABEL_STUDIO_BASE_DATA_DIR="$data_dir" \
            LABEL_STUDIO_USERNAME="$LS_ADMIN_EMAIL" \
            LABEL_STUDIO_PASSWORD="$LS_ADMIN_PASSWORD" \
            LABEL_STUDIO_USER_TOKEN="$LS_ADMIN_TOKEN" \
            LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true \
            ML_BLOCK_LOCAL_IP=false SSRF_PROTECTION_ENABLED=false \
            SENTRY_DSN= FRONTEND_SENTRY_DSN= COLLECT_ANALYTICS=false LATEST_VERSION_CHECK=false \
            fflag_feat_utc_210_prediction_validation_15082025=true PYTHONUNBUFFERED=1
        exec "$VENV/bin/label-studio" start --no-browser --internal-host 127.0.0.1 --port "$port"
    ) >"$logfile" 2>&1 &
    LS_PID=$!
    deadline=$((SECONDS + START_TIMEOUT))
    until curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$port/health"; do
        if ! kill -0 "$LS_PID" 2>/dev/null; then
            log "Label Studio exited before /health answered; log $logfile:"
            tail -n 40 "$logfile" >&2
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "Label Studio did not answer /health on port $port within $START_TIMEOUT s; log $logfile:"
            tail -n 40 "$logfile" >&2
            return 1
        fi
        sleep 0.5
    done
}

port_in_use() {
    "$VENV/bin/python" -c 'import socket, sys; s = socket.socket(); sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$1"
}

# ---------------------------------------------------------------- template
template_ok() {
    [ -f "$TEMPLATE/label_studio.sqlite3" ] && [ -f "$TEMPLATE/$CREDENTIALS_FILE" ]
}

if template_ok; then
    log "template present: $TEMPLATE"
else
    command -v curl >/dev/null || { log "curl is required"; exit 1; }
    rm -rf "$CACHE/ls-data-template-$LS_VERSION".build.*   # left by a killed run (we hold the lock)
    BUILD="$(mktemp -d "$CACHE/ls-data-template-$LS_VERSION.build.XXXXXX")"
    CHECK="$(mktemp -d "${TMPDIR:-/tmp}/ls-template-check.XXXXXX")"
    cleanup() { stop_ls; rm -rf "$BUILD" "$CHECK"; }
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    port="$(free_port)"
    log "migrating a fresh data dir (40-100 s) on port $port: $BUILD"
    t0=$SECONDS
    start_ls "$BUILD" "$port" "$CACHE/ls-template-build.log"
    log "migrated in $((SECONDS - t0)) s"
    stop_ls
    # Drop what a copy must not inherit: logs and any stale runtime files.
    rm -rf "$BUILD/logs" "$BUILD"/*.log "$BUILD/media/upload" 2>/dev/null || true

    # Verify that a COPY under another path starts and that the legacy token authenticates there.
    cp -a "$BUILD/." "$CHECK/"
    port="$(free_port)"
    t0=$SECONDS
    start_ls "$CHECK" "$port" "$CACHE/ls-template-check.log"
    log "copy started in $((SECONDS - t0)) s"
    port_in_use "$port" || { log "nothing listens on $port"; exit 1; }
    code="$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Token $LS_ADMIN_TOKEN" \
        "http://127.0.0.1:$port/api/current-user/whoami")"
    if [ "$code" != 200 ]; then
        log "the legacy token is rejected on a copy of the template (HTTP $code)"
        exit 1
    fi
    code="$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/current-user/whoami")"
    if [ "$code" = 200 ]; then
        log "the API answers without a token; refusing to publish this template"
        exit 1
    fi
    stop_ls

    cat >"$BUILD/$CREDENTIALS_FILE" <<JSON
{"email": "$LS_ADMIN_EMAIL", "password": "$LS_ADMIN_PASSWORD", "legacy_token": "$LS_ADMIN_TOKEN",
 "label_studio": "$LS_VERSION", "label_studio_sdk": "$SDK_VERSION"}
JSON
    rm -rf "$TEMPLATE"
    mv "$BUILD" "$TEMPLATE"
    rm -rf "$CHECK"
    trap - EXIT
    log "template ready: $TEMPLATE"
fi

echo "venv: $VENV"
echo "template: $TEMPLATE"
