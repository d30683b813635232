"""Reference maintenance job: reset stale token reservations. Like the original it does not use the platform
modules: it reads DATABASE_URL / RESERVATION_TTL_SECONDS itself and builds its own SQLAlchemy engine per
call (PostgreSQL through psycopg2, or SQLite)."""

from __future__ import annotations

import os

from sqlalchemy import create_engine, text

_STALE = {
    "postgresql": "UPDATE workspace_daily_usage SET tokens_reserved = 0, updated_at = NOW() "
                  "WHERE tokens_reserved > 0 AND updated_at < NOW() - make_interval(secs => :ttl)",
    "sqlite": "UPDATE workspace_daily_usage SET tokens_reserved = 0, updated_at = CURRENT_TIMESTAMP "
              "WHERE tokens_reserved > 0 AND updated_at < datetime('now', '-' || :ttl || ' seconds')",
}
# Other databases: no interval arithmetic, every reservation is reset.
_ANY = ("UPDATE workspace_daily_usage SET tokens_reserved = 0, updated_at = CURRENT_TIMESTAMP "
        "WHERE tokens_reserved > 0")


def cleanup_stale_reservations() -> int:
    url = os.getenv("DATABASE_URL", "postgresql://postgres:postgres@localhost:5432/enterprise_rag")
    ttl = max(0, int(os.getenv("RESERVATION_TTL_SECONDS", "600")))
    engine = create_engine(url, pool_pre_ping=True)
    with engine.begin() as conn:
        result = conn.execute(text(_STALE.get(engine.dialect.name, _ANY)), {"ttl": ttl})
        return int(result.rowcount or 0)
