#!/usr/bin/env bash
# Drift check of the generated PDF data (scripts/test.sh runs it): regenerates from the pinned
# inputs into a temporary directory and compares with what is committed under src/pdf/generated/.
#
#   tables   src/pdf/generated/tables.rs, by scripts/gen/pdf_tables.py in .venvs/gen
#            (python-fixtures/requirements-gen.txt, built by scripts/python-envs.sh gen; cached)
#   cid2uni  src/pdf/generated/cid2uni/*.cid2uni, by scripts/gen/pdf_cid2uni.py from Debian's
#            poppler-data 0.4.12-1 (scripts/gen/poppler-data.sh; cached under target/gen-inputs)
#
# Exit status: 0 the committed files are exactly what the generators write; 1 they differ (the diff
# is printed), or a generator or its venv failed; 3 (only with one target) its pinned input cannot
# be had on this machine, so nothing was checked (see poppler-data.sh).
#
# Usage: scripts/gen/check.sh [tables|cid2uni]...   (default: both)
# Env:   VENV_DIR (as scripts/python-envs.sh), GEN_CACHE (as scripts/gen/poppler-data.sh)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VENV_DIR="${VENV_DIR:-$ROOT/.venvs}"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(tables cid2uni)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

check_tables() {
    if ! scripts/python-envs.sh gen >"$tmp/venv.log" 2>&1; then
        cat "$tmp/venv.log"; echo "gen-check: tables: could not build the gen venv"; return 1
    fi
    "$VENV_DIR/gen/bin/python" scripts/gen/pdf_tables.py "$tmp/tables.rs" \
        || { echo "gen-check: tables: scripts/gen/pdf_tables.py failed"; return 1; }
    if diff -u src/pdf/generated/tables.rs "$tmp/tables.rs" >"$tmp/tables.diff"; then
        echo "gen-check: tables: src/pdf/generated/tables.rs is what scripts/gen/pdf_tables.py writes"
        return 0
    fi
    head -40 "$tmp/tables.diff"
    echo "gen-check: tables: src/pdf/generated/tables.rs DIFFERS from scripts/gen/pdf_tables.py's output" \
         "($(grep -c '^[-+][^-+]' "$tmp/tables.diff") lines; regenerate as scripts/gen/README.md says, never edit it by hand)"
    return 1
}

check_cid2uni() {
    local share rc
    share="$(scripts/gen/poppler-data.sh 2>"$tmp/poppler.log")"
    rc=$?
    if [ "$rc" = 3 ]; then
        cat "$tmp/poppler.log"; echo "gen-check: cid2uni: SKIPPED: its pinned input is not available here"; return 3
    elif [ "$rc" != 0 ]; then
        cat "$tmp/poppler.log"; echo "gen-check: cid2uni: could not get its pinned input"; return 1
    fi
    mkdir "$tmp/cid2uni"
    python3 scripts/gen/pdf_cid2uni.py "$share" "$tmp/cid2uni" 2>"$tmp/cid2uni.log" \
        || { cat "$tmp/cid2uni.log"; echo "gen-check: cid2uni: scripts/gen/pdf_cid2uni.py failed"; return 1; }
    if diff -r src/pdf/generated/cid2uni "$tmp/cid2uni"; then
        echo "gen-check: cid2uni: src/pdf/generated/cid2uni/ is what scripts/gen/pdf_cid2uni.py writes"
        return 0
    fi
    echo "gen-check: cid2uni: src/pdf/generated/cid2uni/ DIFFERS from scripts/gen/pdf_cid2uni.py's output"
    return 1
}

status=0
for t in "${TARGETS[@]}"; do
    case "$t" in
        tables) check_tables; rc=$? ;;
        cid2uni) check_cid2uni; rc=$? ;;
        *) echo "gen-check: unknown target $t (tables, cid2uni)"; rc=1 ;;
    esac
    if [ "$rc" = 1 ]; then
        status=1
    elif [ "$rc" = 3 ] && [ ${#TARGETS[@]} = 1 ]; then
        status=3
    fi
done
exit $status
