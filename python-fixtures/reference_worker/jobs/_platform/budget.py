"""Daily token budget per workspace, through the ORM as the platform does it: the day's
workspace_daily_usage row is created if missing (INSERT ... ON CONFLICT DO NOTHING), loaded FOR UPDATE as
an ORM object, changed, and flushed (the UPDATE also sets updated_at = now()). A call joins the session's
open transaction, or opens one of its own that commits when the call returns."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
import datetime as dt

from sqlalchemy import BigInteger, Date, DateTime, func, select
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, mapped_column

from .config import settings
from .db import Base


class BudgetExceededError(Exception):
    def __init__(self, message: str, *, used: int, reserved: int, limit: int) -> None:
        super().__init__(message)
        self.used, self.reserved, self.limit = used, reserved, limit
        self.remaining = max(0, limit - used - reserved)


class InvalidReservationError(Exception):
    pass


class DailyUsage(Base):
    __tablename__ = "workspace_daily_usage"

    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    tokens_used: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens_reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())


_INSERTS = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}


def _amount(value: int, name: str = "amount") -> int:
    if not isinstance(value, int):
        raise InvalidReservationError(f"{name} must be an integer")
    if value < 0:
        raise InvalidReservationError(f"{name} must be >= 0")
    return value


@contextmanager
def _transaction(session):
    if session.in_transaction():
        yield
    else:
        with session.begin():
            yield


def _locked_row(session, workspace_id: uuid.UUID, day: dt.date) -> DailyUsage:
    insert = _INSERTS[session.get_bind().dialect.name]
    session.execute(
        insert(DailyUsage)
        .values(workspace_id=workspace_id, date=day, tokens_used=0, tokens_reserved=0)
        .on_conflict_do_nothing(index_elements=["workspace_id", "date"])
    )
    query = (select(DailyUsage)
             .where(DailyUsage.workspace_id == workspace_id, DailyUsage.date == day)
             .with_for_update())
    return session.execute(query).scalar_one()


def reserve(session, workspace_id: uuid.UUID, amount: int, day: dt.date, ttl_seconds: int = 600) -> None:
    amount = _amount(amount)
    _amount(ttl_seconds, "reservation_ttl_seconds")
    limit = int(settings.DAILY_TOKEN_LIMIT)
    with _transaction(session):
        row = _locked_row(session, workspace_id, day)
        used, reserved = int(row.tokens_used), int(row.tokens_reserved)
        if amount > limit - (used + reserved):
            raise BudgetExceededError("Daily token limit reached for this workspace", used=used, reserved=reserved,
                                      limit=limit)
        row.tokens_reserved = reserved + amount
        session.flush()


def commit_usage(session, workspace_id: uuid.UUID, amount: int, day: dt.date) -> None:
    amount = _amount(amount)
    with _transaction(session):
        row = _locked_row(session, workspace_id, day)
        reserved = int(row.tokens_reserved)
        if amount > reserved:
            raise InvalidReservationError("Cannot commit more tokens than currently reserved")
        row.tokens_reserved = reserved - amount
        row.tokens_used = int(row.tokens_used) + amount
        session.flush()


def release(session, workspace_id: uuid.UUID, amount: int, day: dt.date) -> None:
    amount = _amount(amount)
    with _transaction(session):
        row = _locked_row(session, workspace_id, day)
        reserved = int(row.tokens_reserved)
        if amount > reserved:
            raise InvalidReservationError("Cannot release more tokens than currently reserved")
        row.tokens_reserved = reserved - amount
        session.flush()
