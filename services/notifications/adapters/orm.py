"""Tables of the notifications service database: notifications, webhooks, subscriptions, deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from shared.db.tables import KERNEL_TABLES, UtcDateTime
from shared.retention import PurgeRule, table_of


def _ts(nullable: bool = False, index: bool = False) -> Any:
    # Aware on read on every store: the lease query compares them with the clock's aware time.
    return Field(default=None, sa_column=Column(UtcDateTime(), nullable=nullable, index=index))


class NotificationRow(SQLModel, table=True):
    """One notification for one recipient organisation; `seq` is the feed cursor (global, increasing)."""

    __tablename__ = "notifications_notification"
    __table_args__ = (Index("ix_notifications_notification_feed", "recipient_org_id", "seq"),)

    seq: int | None = Field(default=None, primary_key=True)
    # The envelope id: deterministic upstream, so a re-sent notification hits this unique key.
    id: str = Field(max_length=64, unique=True)
    topic: str = Field(max_length=100)
    recipient_org_id: str = Field(max_length=100)
    role: str = Field(max_length=20)
    detail: str = Field(max_length=20)
    event: str = Field(max_length=100)
    patient_key: str | None = Field(default=None, max_length=100)
    sender_org_id: str | None = Field(default=None, max_length=100, index=True)
    subject: str | None = Field(default=None, max_length=300)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    sent_at: str = Field(max_length=40)  # envelope time, as the producer wrote it
    received_at: datetime = _ts()
    read_at: datetime | None = _ts(nullable=True)


class WebhookRow(SQLModel, table=True):
    __tablename__ = "notifications_webhook"

    id: str = Field(primary_key=True, max_length=36)
    org_id: str = Field(max_length=100, index=True)
    url: str = Field(max_length=2000)
    # Needed in clear to compute HMACs; the database is the service's own (see docs/notifications.md).
    secret: str = Field(max_length=200)
    active: bool = True
    created_at: datetime = _ts()
    deleted_at: datetime | None = _ts(nullable=True)


class SubscriptionRow(SQLModel, table=True):
    """A FHIR topic-based Subscription (Backport IG, R4 shape)."""

    __tablename__ = "notifications_subscription"

    id: str = Field(primary_key=True, max_length=36)
    org_id: str = Field(max_length=100, index=True)
    topic: str = Field(max_length=300)
    filters: list[dict[str, str]] = Field(sa_column=Column(JSON, nullable=False))
    endpoint: str = Field(max_length=2000)
    headers: list[str] = Field(sa_column=Column(JSON, nullable=False))
    content: str = Field(max_length=20)
    heartbeat_seconds: int | None = None
    status: str = Field(max_length=20)  # requested | active | error | off
    events_since_start: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    resource: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts()
    last_sent_at: datetime | None = _ts(nullable=True)
    error: str | None = Field(default=None, max_length=500)


class SubscriptionEventRow(SQLModel, table=True):
    """Event number N of a subscription: what `$events` replays."""

    __tablename__ = "notifications_subscription_event"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_number", name="uq_notifications_subscription_event_number"),
        UniqueConstraint("subscription_id", "notification_id", name="uq_notifications_subscription_event_notif"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subscription_id: str = Field(max_length=36)
    event_number: int = Field(sa_column=Column(BigInteger, nullable=False))
    notification_id: str = Field(max_length=64)
    occurred_at: datetime = _ts()


class DeliveryRow(SQLModel, table=True):
    """One HTTP POST to make to one endpoint; durable, claimed under a lease, ordered by `seq` per target."""

    __tablename__ = "notifications_delivery"
    __table_args__ = (
        # The dispatcher looks for the head of each target's pending queue.
        Index(
            "ix_notifications_delivery_pending",
            "target_id",
            "seq",
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
        UniqueConstraint("target_id", "dedup_key", name="uq_notifications_delivery_dedup"),
    )

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=36, unique=True)
    org_id: str = Field(max_length=100, index=True)
    target_kind: str = Field(max_length=20)  # webhook | subscription
    target_id: str = Field(max_length=36)
    kind: str = Field(max_length=30)  # notification | handshake | heartbeat | event-notification
    dedup_key: str = Field(max_length=100)
    notification_id: str | None = Field(default=None, max_length=64)
    url: str = Field(max_length=2000)
    body: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(max_length=20, index=True)  # pending | delivered | dead | cancelled
    attempts: int = 0
    next_attempt_at: datetime = _ts()
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = _ts(nullable=True)
    last_status: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = _ts()
    delivered_at: datetime | None = _ts(nullable=True)
    dead_at: datetime | None = _ts(nullable=True)


class DisclosureRow(SQLModel, table=True):
    """The disclosure log: which organisation received which event about a patient, at which detail, by which
    channel, when. One row per notification and channel (the first time it happened)."""

    __tablename__ = "notifications_disclosure"
    __table_args__ = (UniqueConstraint("notification_id", "channel", name="uq_notifications_disclosure_channel"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_key: str = Field(max_length=100, index=True)
    notification_id: str = Field(max_length=64)
    org_id: str = Field(max_length=100)
    role: str = Field(max_length=20)
    event: str = Field(max_length=100)
    detail: str = Field(max_length=20)
    channel: str = Field(max_length=100)  # the relais.notify.* topic, feed, webhook or subscription
    at: datetime = _ts()


TABLES = (
    *KERNEL_TABLES,
    *(
        SQLModel.metadata.tables[model.__tablename__]
        for model in (NotificationRow, WebhookRow, SubscriptionRow, SubscriptionEventRow, DeliveryRow, DisclosureRow)
    ),
)


def retention_rules(settings: Any) -> list[PurgeRule]:
    """Service rules beside the kernel's (docs/security.md, Retention): finished deliveries, old notifications
    and their Subscription events (`$events` skips an event whose notification is gone)."""
    deliveries = table_of(DeliveryRow)
    days = settings.retention_notifications_days
    return [
        PurgeRule("delivered", deliveries, "delivered_at", settings.retention_deliveries_days,
                  lambda t: t.c.state == "delivered"),
        PurgeRule("cancelled", deliveries, "created_at", settings.retention_deliveries_days,
                  lambda t: t.c.state == "cancelled"),
        PurgeRule("notifications", table_of(NotificationRow), "received_at", days),
        PurgeRule("subscription_events", table_of(SubscriptionEventRow), "occurred_at", days),
    ]
