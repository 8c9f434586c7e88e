"""Tables of the mail channel, in the notifications service's database: a team's choice of events, receipts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.retention import PurgeRule, table_of


def _ts() -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=False))


class MailChannelRow(SQLModel, table=True):
    """The events a team chose to receive by mail (its address itself lives in the directory)."""

    __tablename__ = "notifications_mail_channel"

    org_id: str = Field(primary_key=True, max_length=100)
    events: list[str] = Field(sa_column=Column(JSON, nullable=False))
    updated_at: datetime = _ts()


class MailReceiptRow(SQLModel, table=True):
    """What the recipient's side said about one mail: one row per notification and status."""

    __tablename__ = "notifications_mail_receipt"
    __table_args__ = (UniqueConstraint("notification_id", "status", name="uq_notifications_mail_receipt_status"),)

    id: int | None = Field(default=None, primary_key=True)
    notification_id: str = Field(max_length=64, index=True)
    org_id: str = Field(max_length=100, index=True)
    delivery_id: str = Field(max_length=36)
    kind: str = Field(max_length=10)  # mdn | dsn
    status: str = Field(max_length=20)  # delivered | read | processed | failed
    code: str = Field(max_length=100)  # the MDN disposition or the DSN status, as the recipient's side wrote it
    detail: str | None = Field(default=None, max_length=300)
    received_at: datetime = _ts()


MAIL_TABLES = tuple(SQLModel.metadata.tables[m.__tablename__] for m in (MailChannelRow, MailReceiptRow))


def mail_retention_rules(settings: Any) -> list[PurgeRule]:
    """Receipts go with the notifications they are about (docs/security.md, Retention)."""
    return [PurgeRule("mail_receipts", table_of(MailReceiptRow), "received_at", settings.retention_notifications_days)]
