#!/usr/bin/env bash
# Build the rq-worker container image (the top-level Dockerfile) with podman, on a machine that
# reaches no container registry (README "Container image", deploy/IMAGE.md).
#
#   1. installs podman, runc and debootstrap from Debian if missing (apt-get update once);
#      podman runs with scripts/image/containers.conf (through CONTAINERS_CONF; /etc is untouched)
#   2. makes the base images the Dockerfile's FROM lines name, when podman's store lacks them:
#        docker.io/library/debian:bookworm-slim      debootstrap --variant=minbase, trimmed as the
#                                                    official slim image is (mirror: apt's own sources)
#        docker.io/library/rust:1.95-slim-bookworm   that base + Debian's rustc-web/cargo-web (1.96,
#                                                    bookworm-security) + gcc, and the machine's
#                                                    locally added CA certificates so cargo can pass
#                                                    the HTTPS proxy (this image only; never the Dockerfile)
#      (remove them with `podman rmi` to remake them, e.g. for Debian updates or a newer rustc-web)
#   3. builds the image, either
#        full:    the whole multi-stage build (cargo build --release --locked in the build stage;
#                 the cargo registry and target dir are cache mounts, kept by buildah on this
#                 machine (/var/tmp/buildah-cache) and reused),
#                 when Dockerfile, .dockerignore, Cargo.toml or Cargo.lock changed since the last
#                 full build on this machine, when no full build ever ran, or with --full;
#        runtime: only the runtime stages, with `--build-context build=DIR` where DIR/out/rq-worker
#                 is a stripped copy of an already built binary (RQ_WORKER_BIN, else
#                 target/debug/rq-worker); seconds instead of minutes;
#      tags it (IMAGE, default localhost/rq-worker:test; a full build also tags
#      localhost/rq-worker:latest and localhost/rq-worker:VERSION, the name deploy/ uses) and prints
#      its size and the build time (appended to build-times.log in the cache directory).
#
# Usage: scripts/image.sh [--full | --runtime] [--tag IMAGE]
#        scripts/image.sh --bases     only steps 1 and 2 (scripts/original-image.sh uses them)
# Env:   RQ_WORKER_BIN, RQ_WORKER_IMAGE (same as --tag), IMAGE_CACHE_DIR (stamps and timings,
#        default ${XDG_CACHE_HOME:-$HOME/.cache}/rq-worker)
# Last lines: "image: NAME SIZE_BYTES (N MB), built (full|runtime) in S s".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CONTAINERS_CONF="$ROOT/scripts/image/containers.conf"
CACHE_DIR="${IMAGE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rq-worker}"
IMAGE="${RQ_WORKER_IMAGE:-localhost/rq-worker:test}"
BASE_IMAGE=docker.io/library/debian:bookworm-slim
RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
MODE=auto
while [ $# -gt 0 ]; do
    case "$1" in
        --full) MODE=full ;;
        --runtime) MODE=runtime ;;
        --bases) MODE=bases ;;
        --tag) IMAGE="$2"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "image.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$CACHE_DIR"
log() { printf 'image.sh: %s\n' "$*"; }
die() { printf 'image.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# ---- 1. tools ------------------------------------------------------------------------------
ensure_tools() {
    local missing=()
    for t in podman runc debootstrap; do command -v "$t" >/dev/null || missing+=("$t"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]} from Debian"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq podman runc debootstrap >/dev/null \
        || die "cannot install podman runc debootstrap"
}

# The Debian mirror and the security mirror apt already uses (deb822 .sources or one-line .list).
# Prints "MIRROR SECURITY_MIRROR".
apt_mirrors() {
    local files=() f
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list; do
        [ -f "$f" ] && files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] || return 0
    awk '
        function take(uri, suites) {
            if (uri !~ /^https?:\/\//) return
            if (suites ~ /-security/) { if (sec == "") sec = uri }
            else if (uri ~ /\/debian\/?$/ && main == "") main = uri
        }
        FNR == 1 { if (uri != "") take(uri, suites); uri = ""; suites = "" }
        /^deb[ \t]/ { u = $2; if (u ~ /^\[/) { for (i = 3; i <= NF && $(i-1) !~ /\]$/; i++); u = $i; s = $(i+1) } else s = $3; take(u, s); next }
        /^URIs:/ { uri = $2 }
        /^Suites:/ { suites = $0 }
        /^[ \t]*$/ { if (uri != "") take(uri, suites); uri = ""; suites = "" }
        END { if (uri != "") take(uri, suites); print main, sec }
    ' "${files[@]}" 2>/dev/null
}

# ---- 2. base images ------------------------------------------------------------------------
make_base_image() {
    podman image exists "$BASE_IMAGE" && return 0
    local mirror security
    read -r mirror security < <(apt_mirrors) || true
    [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list.d/"
    [ -n "$security" ] || security="${mirror%/debian}/debian-security"
    log "making $BASE_IMAGE with debootstrap (mirror from apt's sources)"
    local t0 rootfs
    t0=$(date +%s)
    rootfs="$(mktemp -d "${TMPDIR:-/tmp}/rqw-rootfs.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -rf '$rootfs'" EXIT
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$CACHE_DIR/debootstrap.log" 2>&1 \
        || { tail -20 "$CACHE_DIR/debootstrap.log"; die "debootstrap failed"; }
    # Trim as the official slim image does; keep later apt-get layers free of docs and caches.
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    printf 'Acquire::Languages "none";\n' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    rm -rf "$rootfs"/usr/share/{man,info,locale,lintian}/* "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log \
        "$rootfs"/var/log/apt/* "$rootfs"/tmp/* "$rootfs"/root/.cache 2>/dev/null || true
    : >"$rootfs/etc/machine-id"
    tar -C "$rootfs" --numeric-owner -c . | podman import \
        --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$BASE_IMAGE" >/dev/null || die "podman import failed"
    rm -rf "$rootfs"
    trap - EXIT
    log "$BASE_IMAGE made in $(( $(date +%s) - t0 )) s"
}

# A stand-in for the official rust image from Debian packages only. The locally added CA
# certificates (the intercepting HTTPS proxy's) go into this local image and nowhere else.
make_rust_image() {
    podman image exists "$RUST_IMAGE" && return 0
    log "making $RUST_IMAGE from Debian's rustc-web/cargo-web"
    local t0 ctx
    t0=$(date +%s)
    ctx="$(mktemp -d "${TMPDIR:-/tmp}/rqw-rustctx.XXXXXX")"
    mkdir -p "$ctx/local-ca"
    cp /usr/local/share/ca-certificates/*.crt "$ctx/local-ca/" 2>/dev/null || true
    cat >"$ctx/Containerfile" <<EOF
FROM $BASE_IMAGE
RUN apt-get update && apt-get install -y --no-install-recommends \\
        ca-certificates gcc libc6-dev rustc-web cargo-web \\
    && rm -rf /var/lib/apt/lists/*
COPY local-ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ENV CARGO_HOME=/usr/local/cargo
ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
    podman build --format docker -t "$RUST_IMAGE" "$ctx" >"$CACHE_DIR/rust-image.log" 2>&1 \
        || { tail -30 "$CACHE_DIR/rust-image.log"; rm -rf "$ctx"; die "building $RUST_IMAGE failed"; }
    rm -rf "$ctx"
    log "$RUST_IMAGE made in $(( $(date +%s) - t0 )) s ($(podman run --rm "$RUST_IMAGE" rustc --version))"
}

# ---- 3. the image --------------------------------------------------------------------------
crate_version() { sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1; }
full_stamp() { cat Dockerfile .dockerignore Cargo.toml Cargo.lock | sha256sum | cut -d' ' -f1; }

size_line() {
    local bytes
    bytes="$(podman image inspect --format '{{.Size}}' "$1")"
    printf '%s %s bytes (%s MB)' "$1" "$bytes" "$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }')"
}

build_full() {
    log "full multi-stage build (cargo build --release --locked inside the build stage)"
    local t0 secs
    t0=$(date +%s)
    podman build --format docker --layers -t "$IMAGE" -f Dockerfile . 2>&1 | tee "$CACHE_DIR/full-build.log" \
        | grep -E '^(STEP|COMMIT|Successfully|Error|error)|Finished|Compiling rq-worker' || true
    [ "${PIPESTATUS[0]}" = 0 ] || die "podman build failed (log: $CACHE_DIR/full-build.log)"
    secs=$(( $(date +%s) - t0 ))
    # Also under the names deploy/ uses by default (rq-worker:<Cargo.toml version>) and :latest.
    podman tag "$IMAGE" localhost/rq-worker:latest "localhost/rq-worker:$(crate_version)"
    full_stamp >"$CACHE_DIR/full-build.stamp"
    printf '%s full %s %s\n' "$(date -u +%FT%TZ)" "$secs" "$(podman image inspect --format '{{.Size}}' "$IMAGE")" \
        >>"$CACHE_DIR/build-times.log"
    log "image: $(size_line "$IMAGE"), built full in $secs s"
}

build_runtime() {
    local bin="${RQ_WORKER_BIN:-$ROOT/target/debug/rq-worker}"
    [ -x "$bin" ] || die "$bin not found: cargo build first (or set RQ_WORKER_BIN)"
    log "runtime-stage build with the binary $bin"
    local t0 secs ctx
    t0=$(date +%s)
    ctx="$(mktemp -d "${TMPDIR:-/tmp}/rqw-bin.XXXXXX")"
    mkdir -p "$ctx/out"
    strip -o "$ctx/out/rq-worker" "$bin" 2>/dev/null || cp "$bin" "$ctx/out/rq-worker"
    if ! podman build --format docker --layers -t "$IMAGE" --build-context "build=$ctx" -f Dockerfile . \
            >"$CACHE_DIR/runtime-build.log" 2>&1; then
        rm -rf "$ctx"
        tail -40 "$CACHE_DIR/runtime-build.log"
        die "podman build failed (log: $CACHE_DIR/runtime-build.log)"
    fi
    rm -rf "$ctx"
    secs=$(( $(date +%s) - t0 ))
    printf '%s runtime %s %s\n' "$(date -u +%FT%TZ)" "$secs" "$(podman image inspect --format '{{.Size}}' "$IMAGE")" \
        >>"$CACHE_DIR/build-times.log"
    log "image: $(size_line "$IMAGE"), built runtime in $secs s"
}

ensure_tools
make_base_image
make_rust_image
[ "$MODE" = bases ] && exit 0
if [ "$MODE" = auto ]; then
    if [ "$(cat "$CACHE_DIR/full-build.stamp" 2>/dev/null)" != "$(full_stamp)" ]; then
        log "Dockerfile/.dockerignore/Cargo.toml/Cargo.lock changed since the last full build here"
        MODE=full
    else
        MODE=runtime
    fi
fi
if [ "$MODE" = full ]; then build_full; else build_runtime; fi
# Every build leaves untagged images behind (earlier test images, layer-cache images). Those older
# than a week go, so that a CI machine's store stays bounded; recent ones keep serving as cache
# (the cargo cache mounts are not images and are kept).
podman image prune -f --filter until=168h >/dev/null 2>&1 || true
