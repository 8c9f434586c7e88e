"""Tables every service database holds: outbox, inbox and audit log."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Integer, Text, text
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UtcDateTime(TypeDecorator[datetime]):
    """Stored in UTC, read back timezone-aware on every database (SQLite forgets the offset), so a time read
    from the store and the clock's time compare the same way in Python and in SQL on SQLite and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

class OutboxMessage(SQLModel, table=True):
    """A message written in the same transaction as the state it announces; the relay publishes it."""

    __tablename__ = "outbox"
    __table_args__ = (
        # The relay only ever scans unpublished rows in order: keep that index small.
        Index(
            "ix_outbox_pending",
            "seq",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )

    seq: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=64, unique=True)
    topic: str = Field(max_length=200)
    key: str = Field(max_length=200)
    event_type: str = Field(max_length=100)
    value: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    published_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))

class InboxMessage(SQLModel, table=True):
    """One row per (consumer, message id) handled: the unique key turns redelivery into a no-op."""

    __tablename__ = "inbox"

    consumer: str = Field(primary_key=True, max_length=100)
    message_id: str = Field(primary_key=True, max_length=64)
    handled_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))

AUDIT_DETAIL_MAX = 2000  # characters of an audit row's JSON detail
_DETAIL_VALUE_MAX = 300


def _cut(value: str | None, length: int) -> str | None:
    """At most `length` characters; a cut value ends with "…" so a reader knows it was longer."""
    if value is None or len(value) <= length:
        return value
    return value[: length - 1] + "…"


def _bounded_detail(detail: dict[str, Any] | None) -> dict[str, Any] | None:
    if detail is None:
        return None
    cut = {_cut(str(k), 100) or "": _cut(v, _DETAIL_VALUE_MAX) if isinstance(v, str) else v for k, v in detail.items()}
    if len(json.dumps(cut, default=str)) <= AUDIT_DETAIL_MAX:
        return cut
    reason = cut.get("reason")
    return {"reason": reason if isinstance(reason, str) else None, "truncated": True}


class AuditEntry(SQLModel, table=True):
    """Who did what to which resource, and whether it was allowed."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    organisation_id: str | None = Field(default=None, max_length=100, index=True)
    role: str | None = Field(default=None, max_length=20)
    action: str = Field(max_length=100)
    resource: str | None = Field(default=None, max_length=300)
    outcome: str = Field(max_length=20)
    detail: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))

    @classmethod
    def bounded(
        cls,
        *,
        at: datetime,
        action: str,
        outcome: str,
        organisation_id: str | None,
        role: str | None,
        resource: str | None,
        detail: dict[str, Any] | None,
    ) -> AuditEntry:
        """An entry cut to its columns' sizes: what a caller sent (a 10,000-character id) is recorded, shortened,
        on every database, and never makes the audit insert fail on PostgreSQL nor grow a row on SQLite."""
        columns = SQLModel.metadata.tables["audit_log"].c

        def fit(name: str, value: str | None) -> str | None:
            return _cut(value, int(getattr(columns[name].type, "length", None) or 100))

        return cls(
            at=at,
            action=fit("action", action) or "",
            outcome=fit("outcome", outcome) or "",
            organisation_id=fit("organisation_id", organisation_id),
            role=fit("role", role),
            resource=fit("resource", resource),
            detail=_bounded_detail(detail),
        )

class OutboxDeadLetter(SQLModel, table=True):
    """An outbox row the bus can never take (too large, unencodable, rejected by the broker), set aside so
    the rows behind it keep flowing; kept for an operator (`relais outbox dead-letters`)."""

    __tablename__ = "outbox_dead_letter"

    id: int | None = Field(default=None, primary_key=True)
    outbox_seq: int = Field(sa_column=Column(Integer, nullable=False))
    message_id: str = Field(max_length=64)
    topic: str = Field(max_length=200)
    key: str = Field(max_length=200)
    event_type: str = Field(max_length=100)
    value: str = Field(sa_column=Column(Text, nullable=False))
    size: int = Field(sa_column=Column(Integer, nullable=False))
    reason: str = Field(max_length=50)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    dead_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


KERNEL_TABLES = tuple(
    SQLModel.metadata.tables[model.__tablename__]
    for model in (OutboxMessage, InboxMessage, AuditEntry, OutboxDeadLetter)
)
