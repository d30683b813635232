"""Database access as the platform sets it up: a SQLAlchemy engine created at import from DATABASE_URL (a plain
`postgresql://` URL, so the psycopg2 driver) with pool_pre_ping, and a session factory. The jobs open a new
session for every unit of work (each status update, each chunk's reservation and each chunk's write), so
every checkout from the pool pays the pre-ping round trip."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.orm import DeclarativeBase, sessionmaker

from .config import settings

engine = create_engine(settings.DATABASE_URL, pool_pre_ping=True)
Session = sessionmaker(bind=engine, autoflush=False)


class Base(DeclarativeBase):
    """Declarative base of the ORM rows (only the budget module maps one)."""


_STATUS_CONSTRAINT = text(
    "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t ON c.conrelid = t.oid "
    "WHERE t.relname = 'documents' AND c.conname = 'chk_status' LIMIT 1"
)


def allowed_statuses(session) -> set[str]:
    """The statuses chk_status allows. Only an `IN (...)` definition is understood (PostgreSQL prints
    `= ANY (ARRAY[...])`, which yields an empty set): the original reads the constraint the same way."""
    definition = session.execute(_STATUS_CONSTRAINT).scalar_one_or_none()
    if not definition:
        return set()
    definition = str(definition)
    if "IN (" not in definition:
        return set()
    body = definition.split("IN (", 1)[1].rsplit(")", 1)[0]
    return {item.strip().strip("'\"") for item in body.split(",")}
