#!/usr/bin/env bash
# Build a real kube-apiserver (+ kube-controller-manager) from Debian's own
# `kubernetes` source package and cache the binaries.
#
# Usage: scripts/build-kube-apiserver.sh
#
# The last line on stdout is the directory holding the cached binaries:
#   ${TS_SEGMENTER_CACHE:-$HOME/.cache/ts-segmenter}/kube-apiserver/<debian version>/bin
# If they are cached already, that line is printed at once and nothing else
# happens. Otherwise the script (idempotently):
#   1. apt-get installs the build/run dependencies (apt-get update only when
#      something is missing),
#   2. downloads the Debian source into a private apt directory (system apt
#      sources are never edited),
#   3. replaces the vendored modern-go/reflect2 1.0.1 with Debian's 1.0.2
#      (1.0.1 segfaults with Go >= 1.18 on the first custom-object create),
#   4. builds cmd/kube-apiserver and cmd/kube-controller-manager with
#      Kubernetes' own make (CGO_ENABLED=0),
#   5. copies only the binaries into the cache and deletes the build tree.
# A flock on the cache directory makes concurrent callers wait for one build.
# All progress output goes to stderr. See docs: APISERVER.md.
#
# Environment:
#   TS_SEGMENTER_CACHE   cache root (default: $HOME/.cache/ts-segmenter)
#   KUBE_SRC_VERSION     Debian source version to build
#                        (default: 1.20.5+really1.20.2-1.1+deb12u1; if apt no
#                        longer offers it, the newest available one is used)
set -euo pipefail

KUBE_SRC_VERSION="${KUBE_SRC_VERSION:-1.20.5+really1.20.2-1.1+deb12u1}"
CACHE_ROOT="${TS_SEGMENTER_CACHE:-${HOME:?HOME is not set}/.cache/ts-segmenter}/kube-apiserver"
BINARIES=(kube-apiserver kube-controller-manager)
# Packages needed to build (and, for etcd-server/openssl, to run) the server.
PACKAGES=(golang-go make rsync dpkg-dev openssl etcd-server golang-github-modern-go-reflect2-dev)
REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2

log() { printf '[build-kube-apiserver] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# cached_dir VERSION: print the bin dir when every binary is there and runnable.
cached_dir() {
    local dir="$CACHE_ROOT/$1/bin" b
    for b in "${BINARIES[@]}"; do
        [[ -x "$dir/$b" ]] || return 1
    done
    printf '%s\n' "$dir"
}

# When apt no longer offered $KUBE_SRC_VERSION, the version built instead is
# recorded here so that later runs still hit the cache without apt.
RESOLVED_FILE="$CACHE_ROOT/$KUBE_SRC_VERSION.resolved"

cached_any() {
    cached_dir "$KUBE_SRC_VERSION" ||
        { [[ -r "$RESOLVED_FILE" ]] && cached_dir "$(<"$RESOLVED_FILE")"; }
}

# Fast path: nothing to do (no apt, no lock, no network).
if dir="$(cached_any)" && command -v etcd >/dev/null 2>&1; then
    printf '%s\n' "$dir"
    exit 0
fi

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo "$@"
    else
        die "need root (or password-less sudo) to run: $*"
    fi
}

ensure_packages() {
    local missing=() p status
    for p in "${PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
        [[ "$status" == "install ok installed" ]] || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing missing packages: ${missing[*]}"
        as_root apt-get update -qq >&2
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    fi
}

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.build.lock"
if ! flock -n 9; then
    log "another build holds $CACHE_ROOT/.build.lock; waiting for it"
    flock 9
fi

# etcd/openssl are runtime needs too, so make sure they are present even on a
# cache hit that only lacked etcd.
ensure_packages

if dir="$(cached_any)"; then
    printf '%s\n' "$dir"
    exit 0
fi

[[ -d "$REFLECT2_SRC" ]] || die "$REFLECT2_SRC missing (golang-github-modern-go-reflect2-dev)"

BUILD_DIR="$(mktemp -d "$CACHE_ROOT/build.XXXXXX")"
cleanup() { rm -rf "$BUILD_DIR"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# Private apt configuration with deb-src entries; system sources stay untouched.
# It needs no root: only the installs above do.
APT_DIR="$BUILD_DIR/apt"
mkdir -p "$APT_DIR/parts" "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
src_list=/etc/apt/sources.list.d/debian.sources
[[ -r "$src_list" ]] || die "$src_list not found"
sed -E 's/^Types:[[:space:]]*deb[[:space:]]*$/Types: deb-src/' "$src_list" >"$APT_DIR/parts/debian-src.sources"
APT_OPTS=(
    -o Dir::Etc::sourcelist=/dev/null
    -o "Dir::Etc::sourceparts=$APT_DIR/parts"
    -o "Dir::State::Lists=$APT_DIR/lists"
    -o "Dir::Cache=$APT_DIR/cache"
)
# As root, apt would drop to the _apt user, which cannot write our private dir.
[[ "$(id -u)" -ne 0 ]] || APT_OPTS+=(-o APT::Sandbox::User=root)
log "updating private deb-src index"
apt-get "${APT_OPTS[@]}" update -qq >&2

available="$(apt-cache "${APT_OPTS[@]}" showsrc kubernetes 2>/dev/null |
    awk '/^Package: /{p=$2} /^Version: /{if (p=="kubernetes") print $2}')"
[[ -n "$available" ]] || die "apt offers no 'kubernetes' source package"
version="$KUBE_SRC_VERSION"
if ! grep -qxF "$version" <<<"$available"; then
    version="$(sort -V <<<"$available" | tail -n1)"
    log "WARNING: source version $KUBE_SRC_VERSION not offered; using $version" \
        "(update KUBE_SRC_VERSION in $0)"
    if dir="$(cached_dir "$version")"; then
        printf '%s\n' "$version" >"$RESOLVED_FILE"
        printf '%s\n' "$dir"
        exit 0
    fi
fi

log "downloading kubernetes source $version"
(cd "$BUILD_DIR" && apt-get "${APT_OPTS[@]}" source -qq "kubernetes=$version" >&2)
src="$(find "$BUILD_DIR" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)"
[[ -n "$src" && -f "$src/Makefile" ]] || die "unpacked source tree not found in $BUILD_DIR"

log "replacing vendored modern-go/reflect2 with $REFLECT2_SRC"
rm -rf "$src/vendor/github.com/modern-go/reflect2"
cp -rL "$REFLECT2_SRC" "$src/vendor/github.com/modern-go/reflect2"

what="$(printf 'cmd/%s ' "${BINARIES[@]}")"
log "building ${what% } (this takes several minutes)"
start=$SECONDS
(
    cd "$src"
    export CGO_ENABLED=0 GOFLAGS= GO111MODULE=off
    export GOCACHE="$BUILD_DIR/gocache"
    make WHAT="${what% }" >&2
)
log "build finished in $((SECONDS - start)) s"

dest="$CACHE_ROOT/$version/bin"
tmp_dest="$CACHE_ROOT/$version/bin.tmp.$$"
rm -rf "$tmp_dest"
mkdir -p "$tmp_dest"
for b in "${BINARIES[@]}"; do
    f="$src/_output/bin/$b"
    [[ -x "$f" ]] || f="$(find "$src/_output" -type f -name "$b" -perm -u+x | head -n1)"
    [[ -n "$f" ]] || die "built binary $b not found under $src/_output"
    cp "$f" "$tmp_dest/$b"
    chmod 0755 "$tmp_dest/$b"
done
"$tmp_dest/kube-apiserver" --version >&2
rm -rf "$dest"
mv "$tmp_dest" "$dest"
printf '%s\n' "$version" >"$CACHE_ROOT/$version/SOURCE_VERSION"
[[ "$version" == "$KUBE_SRC_VERSION" ]] || printf '%s\n' "$version" >"$RESOLVED_FILE"
log "cached binaries in $dest"
printf '%s\n' "$dest"
