"""Settings, database connection, storage download and token budget shared by the reference jobs."""

from __future__ import annotations

import os
from urllib.parse import quote

import httpx
import psycopg


class BudgetExceededError(Exception):
    def __init__(self, message: str, *, used: int, reserved: int, limit: int) -> None:
        super().__init__(message)
        self.used, self.reserved, self.limit = used, reserved, limit


class InvalidReservationError(Exception):
    pass


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def database_url() -> str:
    url = env("DATABASE_URL", "postgresql://postgres:postgres@localhost:5432/enterprise_rag")
    scheme, sep, rest = url.partition("://")
    return scheme.split("+")[0] + sep + rest


_conn: psycopg.Connection | None = None


def db() -> psycopg.Connection:
    """One connection per worker process (the original reuses pooled connections the same way)."""
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg.connect(database_url(), autocommit=False)
    return _conn


def allowed_statuses(cur) -> set[str]:
    # Same reading of the constraint as the original: only an "IN (" list is understood.
    cur.execute(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t ON c.conrelid = t.oid "
        "WHERE t.relname = 'documents' AND c.conname = 'chk_status' LIMIT 1"
    )
    row = cur.fetchone()
    if not row or not row[0]:
        return set()
    text = str(row[0])
    if "IN (" not in text:
        return set()
    body = text.split("IN (", 1)[1].rsplit(")", 1)[0]
    return {item.strip().strip("'\"") for item in body.split(",")}


def download(bucket: str, path: str) -> bytes:
    key = env("SUPABASE_SERVICE_ROLE_KEY") or env("SUPABASE_KEY")
    base = env("SUPABASE_URL").rstrip("/")
    if not base or not key:
        raise ValueError("Supabase storage is not configured")
    url = f"{base}/storage/v1/object/{quote(bucket, safe='')}/{quote(path, safe='/')}"
    headers = {"apikey": key, "Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    response = httpx.get(url, headers=headers, timeout=60.0)
    if response.status_code >= 400:
        raise ValueError(f"Supabase storage download failed ({response.status_code}): {response.text}")
    return response.content


def _usage_row(cur, workspace_id, usage_date) -> tuple[int, int]:
    cur.execute(
        "INSERT INTO workspace_daily_usage (workspace_id, date, tokens_used, tokens_reserved) "
        "VALUES (%s, %s, 0, 0) ON CONFLICT (workspace_id, date) DO NOTHING",
        (workspace_id, usage_date),
    )
    cur.execute(
        "SELECT tokens_used, tokens_reserved FROM workspace_daily_usage "
        "WHERE workspace_id = %s AND date = %s FOR UPDATE",
        (workspace_id, usage_date),
    )
    used, reserved = cur.fetchone()
    return int(used), int(reserved)


def _set_usage(cur, workspace_id, usage_date, used: int, reserved: int) -> None:
    cur.execute(
        "UPDATE workspace_daily_usage SET tokens_used = %s, tokens_reserved = %s, updated_at = NOW() "
        "WHERE workspace_id = %s AND date = %s",
        (used, reserved, workspace_id, usage_date),
    )


def reserve(cur, workspace_id, usage_date, amount: int) -> None:
    limit = int(env("DAILY_TOKEN_LIMIT", "100000"))
    used, reserved = _usage_row(cur, workspace_id, usage_date)
    if amount > limit - (used + reserved):
        raise BudgetExceededError("Daily token limit reached for this workspace", used=used, reserved=reserved,
                                  limit=limit)
    _set_usage(cur, workspace_id, usage_date, used, reserved + amount)


def commit_usage(cur, workspace_id, usage_date, amount: int) -> None:
    used, reserved = _usage_row(cur, workspace_id, usage_date)
    if amount > reserved:
        raise InvalidReservationError("Cannot commit more tokens than currently reserved")
    _set_usage(cur, workspace_id, usage_date, used + amount, reserved - amount)


def release(cur, workspace_id, usage_date, amount: int) -> None:
    used, reserved = _usage_row(cur, workspace_id, usage_date)
    if amount > reserved:
        raise InvalidReservationError("Cannot release more tokens than currently reserved")
    _set_usage(cur, workspace_id, usage_date, used, reserved - amount)
