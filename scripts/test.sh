#!/usr/bin/env bash
# THE test command of rq-worker (README "Tests"; .ci/run calls exactly this).
#
#   1. builds the Python venvs the tests drive (.venvs/rq1.16, rq2.12 + rq-dashboard, rq3.0; cached)
#   2. builds the worker (cargo build); checks that the generated PDF data under src/pdf/generated/
#      is exactly what scripts/gen/ writes from its pinned inputs (scripts/gen/check.sh: one test
#      per generator, seconds once .venvs/gen and the cached input exist); runs every Rust test
#      (cargo test), then the worker
#      integration tests (cargo test --test worker) once more on Redis 6.2.14, the oldest Redis the
#      startup check accepts, built by scripts/redis-min.sh (cached; a failed build is a failure)
#   3. runs compat-tests/ once per rq venv against target/debug/rq-worker, each test on its own
#      private redis-server (loopback, free port)
#   4. runs ingest-tests/ when that directory exists, then the chaos suite at CI size
#      (scripts/chaos.py and scripts/chaos_ingest.py: rq-worker and the Python worker under the same
#      seeded fault schedule; fails when the rq-worker row breaks an invariant, the Python row is
#      printed for comparison only)
#   5. runs deploy/tests/ (schema validation of the deployment files) when that directory exists
#   6. builds the container image (scripts/image.sh: the full multi-stage build only when Dockerfile,
#      .dockerignore, Cargo.toml or Cargo.lock changed since the last full build on this machine, else
#      the runtime stage around the binary of step 2), runs image-tests/ against it, and a few
#      ingest-tests with the worker inside the container (image-tests/podman-worker.sh)
# and exits non-zero if anything failed. The last line is "summary: N passed, N failed, N skipped".
#
# Options (environment):
#   RQ_VERSIONS="rq1.16 rq2.12 rq3.0"  which rq venvs to run the compat suite with
#   COMPAT_WORKER=python               validate the compat suite against the real Python `rq worker`
#                                      of each version instead of rq-worker (skips nothing else)
#   PYTEST_ARGS="-k retry -x"          extra pytest arguments for the Python suites
#   SKIP_CARGO_TEST=1                  skip `cargo test`, both runs (the worker is still built)
#   SKIP_IMAGE=1                       skip step 6 (counted as one skipped test; never set in CI)
#   CHAOS_SEED=N                       seed of the chaos step (default 1; the seed is in its table)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$(date +%s)
RQ_VERSIONS="${RQ_VERSIONS:-rq1.16 rq2.12 rq3.0}"
COMPAT_WORKER="${COMPAT_WORKER:-rust}"
LOGDIR="$ROOT/target/test-logs"
mkdir -p "$LOGDIR"

PASSED=0; FAILED=0; SKIPPED=0
FAILURES=()

note() { printf '\n==== %s\n' "$*"; }
fail_step() { FAILURES+=("$1"); }

# Add a pytest run's counts (from its closing line) to the totals.
count_pytest() {
    local line
    line="$(grep -E '^=+ .*(passed|failed|error|skipped|xfailed|no tests ran).* in [0-9.]+s' "$1" | tail -1)"
    local n
    for kind in passed failed error errors skipped xfailed xpassed; do
        n="$(grep -oE "[0-9]+ $kind\b" <<<"$line" | grep -oE '^[0-9]+' || true)"
        [ -n "$n" ] || continue
        case $kind in
            passed|xfailed) PASSED=$((PASSED + n)) ;;
            failed|error|errors|xpassed) FAILED=$((FAILED + n)) ;;
            skipped) SKIPPED=$((SKIPPED + n)) ;;
        esac
    done
}

# Run one pytest suite with a given venv; pytest's exit 5 (no tests collected) is not a failure.
run_pytest() {
    local label="$1" venv="$2"; shift 2
    local log="$LOGDIR/pytest-$label.log"
    note "pytest $label ($venv)"
    timeout --kill-after=30 2400 "$ROOT/.venvs/$venv/bin/python" -m pytest -p no:cacheprovider -rfEsxX \
        ${PYTEST_ARGS:-} "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    count_pytest "$log"
    case $rc in
        0) ;;
        5) echo "test.sh: $label collected no tests (pytest exit 5): not counted as a failure" ;;
        *) echo "test.sh: $label FAILED (pytest exit $rc)"; fail_step "$label"
           grep -qE '^=+ .* in [0-9.]+s' "$log" || FAILED=$((FAILED + 1)) ;;
    esac
}

# ---------------------------------------------------------------------------------------------
note "prerequisites"
if ! command -v redis-server >/dev/null; then
    echo "test.sh: redis-server not found; installing Debian's redis-server"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) \
        || { echo "test.sh: cannot install redis-server" >&2; exit 1; }
fi
redis-server --version
# The PostgreSQL TLS test (tests/ingest.rs) starts a server built with OpenSSL (the embedded one
# used by the other ingest tests has none) and makes its certificate with the openssl CLI.
if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || ! command -v openssl >/dev/null; then
    echo "test.sh: PostgreSQL server binaries or openssl not found; installing Debian's postgresql and openssl"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql openssl) \
        || { echo "test.sh: cannot install postgresql/openssl" >&2; exit 1; }
fi

note "python venvs"
# shellcheck disable=SC2086
ENVS="$RQ_VERSIONS"
[ -d ingest-tests ] && [ -f python-fixtures/requirements-ingest.txt ] && ENVS="$ENVS ingest"
[ -d image-tests ] && [ "${SKIP_IMAGE:-0}" != 1 ] && ENVS="$ENVS image"
[ -f python-fixtures/requirements-gen.txt ] && ENVS="$ENVS gen"  # scripts/gen/check.sh below
# shellcheck disable=SC2086
if ! scripts/python-envs.sh $ENVS; then
    echo "test.sh: could not build the Python venvs" >&2
    exit 1
fi

note "cargo build"
cargo build 2>&1 | tee "$LOGDIR/cargo-build.log" | tail -3
rc=${PIPESTATUS[0]}
if [ "$rc" != 0 ] || [ ! -x target/debug/rq-worker ]; then
    tail -60 "$LOGDIR/cargo-build.log"
    echo "test.sh: cargo build FAILED (exit $rc)" >&2
    echo "summary: 0 passed, 1 failed"
    exit 1
fi
export RQ_WORKER_BIN="${RQ_WORKER_BIN:-$ROOT/target/debug/rq-worker}"

# Generated code (issue 11): each generator under scripts/gen/ is run from its pinned inputs into a
# temporary directory and its output compared with the committed files; a difference is a failure.
# Exit 3 means the pinned input cannot be had on this machine (Debian's poppler-data for cid2uni):
# a skip, printed as such.
note "generated code (scripts/gen/check.sh)"
for gen in tables cid2uni; do
    scripts/gen/check.sh "$gen" 2>&1 | tee "$LOGDIR/gen-check-$gen.log"
    case ${PIPESTATUS[0]} in
        0) PASSED=$((PASSED + 1)) ;;
        3) SKIPPED=$((SKIPPED + 1)) ;;
        *) echo "test.sh: generated code $gen FAILED"; fail_step "gen-check $gen"; FAILED=$((FAILED + 1)) ;;
    esac
done

# Add a cargo test run's counts (its "test result:" lines) to the totals; a failed run with no
# result line (build error, crash) counts as one failure.
count_cargo() {
    local label="$1" rc="$2" log="$3"
    while read -r p f ig; do
        PASSED=$((PASSED + p)); FAILED=$((FAILED + f)); SKIPPED=$((SKIPPED + ig))
    done < <(sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed; ([0-9]+) ignored.*/\1 \2 \3/p' \
             "$log")
    if [ "$rc" != 0 ]; then
        echo "test.sh: $label FAILED (exit $rc)"; fail_step "$label"
        grep -q '^test result:' "$log" || FAILED=$((FAILED + 1))
    fi
}

if [ "${SKIP_CARGO_TEST:-0}" != 1 ]; then
    note "cargo test"
    cargo test 2>&1 | tee "$LOGDIR/cargo-test.log"
    count_cargo "cargo test" "${PIPESTATUS[0]}" "$LOGDIR/cargo-test.log"

    # The Redis floor: the startup check accepts 6.2, so every command the worker sends must run
    # there. TestRedis starts RQW_TEST_REDIS_SERVER and fails any test whose server does not
    # report RQW_TEST_REDIS_VERSION.
    note "cargo test --test worker on Redis 6.2.14 (scripts/redis-min.sh)"
    redis_min="$(scripts/redis-min.sh 2>"$LOGDIR/redis-min.log")"
    rc=$?
    cat "$LOGDIR/redis-min.log"
    if [ "$rc" = 0 ] && [ -x "$redis_min" ]; then
        echo "test.sh: $redis_min"
        RQW_TEST_REDIS_SERVER="$redis_min" RQW_TEST_REDIS_VERSION=6.2.14 \
            cargo test --test worker 2>&1 | tee "$LOGDIR/cargo-test-redis-6.2.log"
        count_cargo "cargo test --test worker (Redis 6.2)" "${PIPESTATUS[0]}" "$LOGDIR/cargo-test-redis-6.2.log"
    else
        echo "test.sh: scripts/redis-min.sh FAILED: could not build Redis 6.2.14 (log: $LOGDIR/redis-min.log)"
        fail_step "redis 6.2 build"; FAILED=$((FAILED + 1))
    fi
fi

# ---------------------------------------------------------------------------------------------
# compat-tests: once per rq venv; the venv's rq is the client under test.
for v in $RQ_VERSIONS; do
    run_pytest "compat-$v" "$v" compat-tests --worker "$COMPAT_WORKER"
done

# ---------------------------------------------------------------------------------------------
# ingest-tests (owned by the ingestion work): run when the directory exists, with
# .venvs/ingest when python-fixtures/requirements-ingest.txt exists, else with the rq 1.16 venv
# (the platform's production pin). RQ_WORKER_BIN points at the freshly built worker.
if [ -d ingest-tests ]; then
    if [ -f python-fixtures/requirements-ingest.txt ]; then ingest_venv=ingest; else ingest_venv=rq1.16; fi
    scripts/python-envs.sh "$ingest_venv" >/dev/null || { echo "test.sh: venv $ingest_venv failed"; fail_step venv; }
    run_pytest "ingest" "$ingest_venv" ingest-tests
fi

# ---------------------------------------------------------------------------------------------
# The chaos suite (issue 13), CI size: each part is one test, failed when the rq-worker row breaks
# an invariant (lost, duplicated, re-executed without cause, wrong, failed without running, stuck,
# stale, panics, crashes; per document: stuck, half-written, tokens left reserved). The Python rows
# are the comparison and never fail the step. Tables: target/test-logs/chaos*.log.
run_chaos() {
    local label="$1" venv="$2"; shift 2
    note "$label ($venv)"
    timeout --kill-after=30 1500 "$ROOT/.venvs/$venv/bin/python" "$@" --seed "${CHAOS_SEED:-1}" --check \
        --json "$LOGDIR/$label.json" 2>&1 | tee "$LOGDIR/$label.log"
    if [ "${PIPESTATUS[0]}" = 0 ]; then
        PASSED=$((PASSED + 1))
    else
        echo "test.sh: $label FAILED"; FAILED=$((FAILED + 1)); fail_step "$label"
    fi
}
run_chaos chaos rq1.16 scripts/chaos.py --jobs 800 --duration 45 --parallel
if [ -d ingest-tests ] && [ -x "$ROOT/.venvs/ingest/bin/python" ]; then
    run_chaos chaos-ingest ingest scripts/chaos_ingest.py --docs 16 --duration 45 --parallel
fi

# ---------------------------------------------------------------------------------------------
# deploy/tests: the Compose overrides and Kubernetes manifests under deploy/ against the Compose,
# Kubernetes and KEDA schemas (offline, from .venvs/deploy built from
# python-fixtures/requirements-deploy.txt), and the flags they pass against $RQ_WORKER_BIN --help.
if [ -d deploy/tests ]; then
    scripts/python-envs.sh deploy >/dev/null || { echo "test.sh: venv deploy failed"; fail_step venv; }
    run_pytest "deploy" "deploy" deploy/tests
fi

# ---------------------------------------------------------------------------------------------
# The container image (issue 9): built here, then tested for real with podman. Any failure to
# install podman or to build the image is a failure, never a skip. The tests run with the ingest
# venv (Python RQ 1.16.2, psycopg); hadolint comes from .venvs/image.
if [ -d image-tests ] && [ "${SKIP_IMAGE:-0}" = 1 ]; then
    note "container image: SKIPPED (SKIP_IMAGE=1)"; SKIPPED=$((SKIPPED + 1))
elif [ -d image-tests ]; then
    note "container image (scripts/image.sh)"
    export RQ_WORKER_IMAGE="localhost/rq-worker:test" WORKER_IMAGE="localhost/rq-worker:test"
    podman_conf="$ROOT/scripts/image/containers.conf"
    if command -v podman >/dev/null && CONTAINERS_CONF="$podman_conf" podman image exists "$RQ_WORKER_IMAGE"; then
        CONTAINERS_CONF="$podman_conf" podman rmi -f "$RQ_WORKER_IMAGE" >/dev/null 2>&1 || true  # never test a stale image
    fi
    timeout --kill-after=30 2700 scripts/image.sh --tag "$RQ_WORKER_IMAGE" 2>&1 | tee "$LOGDIR/image-build.log"
    rc=${PIPESTATUS[0]}
    if [ "$rc" != 0 ]; then
        echo "test.sh: scripts/image.sh FAILED (exit $rc): no image, image tests not run"
        fail_step "image build"; FAILED=$((FAILED + 1))
    else
        run_pytest "image" ingest image-tests
        RQ_WORKER_BIN="$ROOT/image-tests/podman-worker.sh" \
            run_pytest "image-ingest" ingest ingest-tests \
            -k "happy_path_three_documents or corrupt_pdf or missing_storage_object or embeddings_down"
    fi
fi

# ---------------------------------------------------------------------------------------------
END=$(date +%s)
note "done in $((END - START)) s; logs in $LOGDIR"
if [ ${#FAILURES[@]} -gt 0 ]; then
    echo "test.sh: FAILED steps: ${FAILURES[*]}"
    [ "$FAILED" -gt 0 ] || FAILED=1
    echo "summary: $PASSED passed, $FAILED failed, $SKIPPED skipped"
    exit 1
fi
echo "summary: $PASSED passed, $FAILED failed, $SKIPPED skipped"
exit 0
