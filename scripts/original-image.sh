#!/usr/bin/env bash
# Size comparison (issue 9): builds the original platform's worker image (its worker/Dockerfile:
# python:3.11-slim, apt gcc g++ libpq-dev poppler-utils, pip install -r requirements.txt) the same
# way scripts/image.sh builds ours, then prints both sizes and the ratio. Not part of the test run.
#
#   scripts/original-image.sh --source PLATFORM [--tag IMAGE]
#
# PLATFORM is a checkout (or bare git directory) of the enterprise RAG platform; its worker/ folder
# at HEAD is the build context, and its Dockerfile is used unchanged. What is local-only:
#   * no registry is reachable, so docker.io/library/python:3.11-slim is a stand-in made here from
#     the same local debian:bookworm-slim (scripts/image.sh --bases) with Debian's python3.11 and pip
#     (python/pip on PATH as in the official image); the official image builds CPython from source
#     into /usr/local, so its size differs a little (the stand-in's size is printed);
#   * pip inside the build must pass the machine's HTTPS proxy: the stand-in trusts the locally added
#     CA certificates, as scripts/image.sh's local rust image does (never the project's Dockerfile);
#   * the platform's pins do not resolve as they stand (supabase 2.3.2's ranges); the four pins of
#     python-fixtures/requirements-ingest.txt that a current pip resolves them to (postgrest,
#     supafunc, gotrue, realtime) are appended to the requirements.txt copy in the build context.
# The image ours is compared with: RQ_WORKER_IMAGE, default localhost/rq-worker:latest (the last
# full build of scripts/image.sh; run `scripts/image.sh --full` first).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CONTAINERS_CONF="$ROOT/scripts/image/containers.conf"
CACHE_DIR="${IMAGE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rq-worker}"
PY_IMAGE=docker.io/library/python:3.11-slim
TAG=localhost/original-worker:measure
OURS="${RQ_WORKER_IMAGE:-localhost/rq-worker:latest}"
SOURCE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --source) SOURCE="$2"; shift ;;
        --tag) TAG="$2"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "original-image.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$SOURCE" ] || { echo "original-image.sh: --source PLATFORM is required (see --help)" >&2; exit 2; }
log() { printf 'original-image.sh: %s\n' "$*"; }
mkdir -p "$CACHE_DIR"

scripts/image.sh --bases

WORK="$(mktemp -d "${TMPDIR:-/tmp}/rqw-original.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

if ! podman image exists "$PY_IMAGE"; then
    log "making the stand-in $PY_IMAGE from Debian's python3.11"
    mkdir -p "$WORK/py/local-ca"
    cp /usr/local/share/ca-certificates/*.crt "$WORK/py/local-ca/" 2>/dev/null || true
    cat >"$WORK/py/Containerfile" <<'EOF'
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates python3.11 python3-pip \
    && rm -rf /var/lib/apt/lists/* /usr/lib/python3.11/EXTERNALLY-MANAGED \
    && ln -s /usr/bin/python3 /usr/local/bin/python && ln -s /usr/bin/pip3 /usr/local/bin/pip
COPY local-ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ENV LANG=C.UTF-8
CMD ["python3"]
EOF
    podman build --format docker -t "$PY_IMAGE" "$WORK/py" >"$CACHE_DIR/python-image.log" 2>&1 \
        || { tail -30 "$CACHE_DIR/python-image.log"; exit 1; }
fi

log "build context: worker/ of $SOURCE at HEAD"
mkdir -p "$WORK/ctx"
if git --git-dir="$SOURCE" rev-parse --git-dir >/dev/null 2>&1; then
    git --git-dir="$SOURCE" archive HEAD worker | tar -x -C "$WORK/ctx"
else
    git -C "$SOURCE" archive HEAD worker | tar -x -C "$WORK/ctx"
fi
cat >>"$WORK/ctx/worker/requirements.txt" <<'EOF'

# Added for the size comparison (scripts/original-image.sh): what pip resolves supabase 2.3.2's ranges to.
postgrest==0.13.2
supafunc==0.3.3
gotrue==2.9.1
realtime==1.0.6
EOF

log "building the original worker image (its Dockerfile unchanged)"
t0=$(date +%s)
podman build --format docker -t "$TAG" "$WORK/ctx/worker" >"$CACHE_DIR/original-build.log" 2>&1 \
    || { tail -40 "$CACHE_DIR/original-build.log"; exit 1; }
secs=$(( $(date +%s) - t0 ))

size() { podman image inspect --format '{{.Size}}' "$1"; }
orig=$(size "$TAG"); base=$(size "$PY_IMAGE")
log "original worker image $TAG: $orig bytes ($((orig / 1000000)) MB), built in $secs s (its base stand-in $PY_IMAGE: $((base / 1000000)) MB)"
if podman image exists "$OURS"; then
    ours=$(size "$OURS")
    log "rq-worker image $OURS: $ours bytes ($((ours / 1000000)) MB)"
    awk -v o="$orig" -v r="$ours" 'BEGIN { printf "original-image.sh: ratio: rq-worker is %.1f%% of the original (1/%.0f)\n", 100 * r / o, o / r }'
else
    log "no $OURS to compare with: run scripts/image.sh --full"
fi
