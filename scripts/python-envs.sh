#!/usr/bin/env bash
# Create (or reuse) the Python virtual environments the compat tests drive:
#   .venvs/rq1.16  rq 1.16.2 (the platform pins 1.16.0; same wire format)
#   .venvs/rq2.12  rq 2.12.0 + rq-dashboard 0.9.0 (+ six)
#   .venvs/rq3.0   rq 3.0.0
# plus .venvs/<NAME> for any other python-fixtures/requirements-<NAME>.txt asked for (e.g. ingest).
# Each venv is built from python-fixtures/requirements-<NAME>.txt and reused while that file and
# the interpreter are unchanged (a stamp file holds their hash). Safe to run again and again.
#
# Usage: scripts/python-envs.sh [NAME...]   (default: rq1.16 rq2.12 rq3.0)
# Env:   PYTHON (default python3.11, else python3), VENV_DIR (default <repo>/.venvs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${VENV_DIR:-$ROOT/.venvs}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VERSIONS=("$@")
[ ${#VERSIONS[@]} -gt 0 ] || VERSIONS=(rq1.16 rq2.12 rq3.0)

# Extra requirements added to a venv on top of its own file (none today; kept as the hook).
extra_requirements() {
    case "$1" in
        *) echo "" ;;
    esac
}

make_env() {
    local ver="$1"
    local req="$ROOT/python-fixtures/requirements-$ver.txt"
    local venv="$VENV_DIR/$ver"
    [ -f "$req" ] || { echo "python-envs: no $req" >&2; return 1; }
    local extra
    extra="$(extra_requirements "$ver")"
    local stamp
    stamp="$( (cat "$req"; echo "$extra"; [ -z "$extra" ] || cat "${extra#-r }";
               "$PYTHON" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
    if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.stamp" 2>/dev/null)" = "$stamp" ]; then
        echo "python-envs: $ver up to date ($venv)"
        return 0
    fi
    echo "python-envs: building $ver in $venv"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req" $extra
    echo "$stamp" > "$venv/.stamp"
}

mkdir -p "$VENV_DIR"
pids=()
for v in "${VERSIONS[@]}"; do
    make_env "$v" > "$VENV_DIR/build-$v.log" 2>&1 &
    pids+=($!)
done
rc=0
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
        echo "python-envs: FAILED to build ${VERSIONS[$i]}:" >&2
        cat "$VENV_DIR/build-${VERSIONS[$i]}.log" >&2
        rc=1
    else
        cat "$VENV_DIR/build-${VERSIONS[$i]}.log"
    fi
done
exit $rc
