"""Reference maintenance job: reset stale token reservations (PostgreSQL or SQLite)."""

from __future__ import annotations

import os
import sqlite3

import psycopg


def cleanup_stale_reservations() -> int:
    url = os.getenv("DATABASE_URL", "postgresql://postgres:postgres@localhost:5432/enterprise_rag")
    ttl = max(0, int(os.getenv("RESERVATION_TTL_SECONDS", "600")))
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        with sqlite3.connect(path) as conn:
            cur = conn.execute(
                "UPDATE workspace_daily_usage SET tokens_reserved = 0, updated_at = CURRENT_TIMESTAMP "
                "WHERE tokens_reserved > 0 AND updated_at < datetime('now', '-' || ? || ' seconds')",
                (ttl,),
            )
            return int(cur.rowcount or 0)
    scheme, sep, rest = url.partition("://")
    with psycopg.connect(scheme.split("+")[0] + sep + rest) as conn:
        cur = conn.execute(
            "UPDATE workspace_daily_usage SET tokens_reserved = 0, updated_at = NOW() "
            "WHERE tokens_reserved > 0 AND updated_at < NOW() - make_interval(secs => %s)",
            (ttl,),
        )
        return int(cur.rowcount or 0)
