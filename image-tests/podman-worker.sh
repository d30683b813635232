#!/usr/bin/env bash
# A stand-in for the rq-worker binary that runs it inside the container image instead, so that a
# suite which starts the worker as RQ_WORKER_BIN (ingest-tests/) runs the image unchanged:
#
#   RQ_WORKER_BIN=image-tests/podman-worker.sh WORKER_IMAGE=localhost/rq-worker:test \
#       .venvs/ingest/bin/python -m pytest ingest-tests -k happy_path
#
# Arguments go to the image's entrypoint; the caller's environment (DATABASE_URL, REDIS_URL,
# SUPABASE_*, OPENAI_*, ...) is passed in with --env-host, less what only makes sense on the host.
# The container uses the host network (the suites' services listen on loopback), is removed on
# exit, and its exit code is this script's; podman relays SIGTERM/SIGINT to the worker (--sig-proxy).
# WORKER_IMAGE, not RQ_WORKER_IMAGE: ingest-tests drops RQ_* variables from the worker's environment.
# Metrics go to an ephemeral loopback port: on the host network the image's 0.0.0.0:9727 may be
# taken, and a busy metrics port stops the worker at start.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/../scripts/image/containers.conf}"
exec podman run --rm --pull=never --no-healthcheck --network host --sig-proxy=true --env-host \
    -e HOME=/app -e PATH=/usr/local/bin -e TMPDIR=/tmp -e "RQ_WORKER_METRICS_ADDR=127.0.0.1:0" \
    "${WORKER_IMAGE:-localhost/rq-worker:test}" "$@"
