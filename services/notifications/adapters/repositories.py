"""Queries of the notifications service; they add and read, only the unit of work commits."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import and_, func, select, update

from services.notifications.adapters.orm import (
    DeliveryRow,
    NotificationRow,
    SubscriptionEventRow,
    SubscriptionRow,
    WebhookRow,
)
from shared.db.engine import is_postgres
from shared.db.repository import Repository


class NotificationRepository(Repository):
    def exists(self, notification_id: str) -> bool:
        query = select(NotificationRow.seq).where(NotificationRow.id == notification_id)
        return self.session.execute(query).first() is not None

    def get_for(self, org_id: str, notification_id: str) -> NotificationRow | None:
        query = select(NotificationRow).where(
            NotificationRow.id == notification_id, NotificationRow.recipient_org_id == org_id
        )
        return self.session.execute(query).scalars().first()

    def feed(self, org_id: str, after: int, limit: int) -> list[NotificationRow]:
        query = (
            select(NotificationRow)
            .where(NotificationRow.recipient_org_id == org_id, NotificationRow.seq > after)
            .order_by(NotificationRow.seq)
            .limit(limit)
        )
        return list(self.session.execute(query).scalars())

    def by_ids(self, ids: list[str]) -> dict[str, NotificationRow]:
        if not ids:
            return {}
        query = select(NotificationRow).where(NotificationRow.id.in_(ids))
        return {row.id: row for row in self.session.execute(query).scalars()}

    def read_receipts_for_sender(self, sender_org_id: str, limit: int) -> list[NotificationRow]:
        query = (
            select(NotificationRow)
            .where(NotificationRow.sender_org_id == sender_org_id, NotificationRow.read_at.is_not(None))
            .order_by(NotificationRow.read_at.desc(), NotificationRow.seq.desc())
            .limit(limit)
        )
        return list(self.session.execute(query).scalars())


class WebhookRepository(Repository):
    def get_for(self, org_id: str, webhook_id: str) -> WebhookRow | None:
        query = select(WebhookRow).where(
            WebhookRow.id == webhook_id, WebhookRow.org_id == org_id, WebhookRow.active.is_(True)
        )
        return self.session.execute(query).scalars().first()

    def get(self, webhook_id: str) -> WebhookRow | None:
        return self.session.get(WebhookRow, webhook_id)

    def active_for(self, org_id: str) -> list[WebhookRow]:
        query = (
            select(WebhookRow)
            .where(WebhookRow.org_id == org_id, WebhookRow.active.is_(True))
            .order_by(WebhookRow.created_at, WebhookRow.id)
        )
        return list(self.session.execute(query).scalars())


class SubscriptionRepository(Repository):
    LIVE = ("requested", "active", "error")

    def get_for(self, org_id: str, subscription_id: str) -> SubscriptionRow | None:
        query = select(SubscriptionRow).where(SubscriptionRow.id == subscription_id, SubscriptionRow.org_id == org_id)
        return self.session.execute(query).scalars().first()

    def get(self, subscription_id: str, *, lock: bool = False) -> SubscriptionRow | None:
        query = select(SubscriptionRow).where(SubscriptionRow.id == subscription_id)
        if lock and is_postgres(self.session.get_bind()):
            query = query.with_for_update()
        return self.session.execute(query).scalars().first()

    def list_for(self, org_id: str) -> list[SubscriptionRow]:
        query = select(SubscriptionRow).where(SubscriptionRow.org_id == org_id).order_by(SubscriptionRow.created_at)
        return list(self.session.execute(query).scalars())

    def live_for(self, org_id: str, *, lock: bool = False) -> list[SubscriptionRow]:
        query = (
            select(SubscriptionRow)
            .where(SubscriptionRow.org_id == org_id, SubscriptionRow.status.in_(self.LIVE))
            .order_by(SubscriptionRow.created_at, SubscriptionRow.id)
        )
        if lock and is_postgres(self.session.get_bind()):
            # Event numbers are a per-subscription counter: serialise writers of the same subscription.
            query = query.with_for_update()
        return list(self.session.execute(query).scalars())

    def heartbeat_due(self, now: datetime) -> list[SubscriptionRow]:
        query = select(SubscriptionRow).where(
            SubscriptionRow.status == "active", SubscriptionRow.heartbeat_seconds.is_not(None)
        )
        rows = list(self.session.execute(query).scalars())
        return [
            row
            for row in rows
            if row.last_sent_at is None or (now - _aware(row.last_sent_at)).total_seconds() >= row.heartbeat_seconds
        ]

    def claim_heartbeat(self, subscription_id: str, seen_last_sent: datetime | None, now: datetime) -> bool:
        """Move last_sent_at forward only if nobody else did: one heartbeat per period across instances."""
        condition = (
            SubscriptionRow.last_sent_at.is_(None)
            if seen_last_sent is None
            else SubscriptionRow.last_sent_at == seen_last_sent
        )
        result = self.session.execute(
            update(SubscriptionRow).where(SubscriptionRow.id == subscription_id, condition).values(last_sent_at=now)
        )
        return result.rowcount == 1

    def events(self, subscription_id: str, since: int, until: int) -> list[SubscriptionEventRow]:
        query = (
            select(SubscriptionEventRow)
            .where(
                SubscriptionEventRow.subscription_id == subscription_id,
                SubscriptionEventRow.event_number >= since,
                SubscriptionEventRow.event_number <= until,
            )
            .order_by(SubscriptionEventRow.event_number)
        )
        return list(self.session.execute(query).scalars())


class DeliveryRepository(Repository):
    def get_for(self, org_id: str, delivery_id: str) -> DeliveryRow | None:
        query = select(DeliveryRow).where(DeliveryRow.id == delivery_id, DeliveryRow.org_id == org_id)
        return self.session.execute(query).scalars().first()

    def get(self, delivery_id: str) -> DeliveryRow | None:
        query = select(DeliveryRow).where(DeliveryRow.id == delivery_id)
        return self.session.execute(query).scalars().first()

    def list_for(self, org_id: str, state: str | None, target_id: str | None, limit: int) -> list[DeliveryRow]:
        query = select(DeliveryRow).where(DeliveryRow.org_id == org_id)
        if state:
            query = query.where(DeliveryRow.state == state)
        if target_id:
            query = query.where(DeliveryRow.target_id == target_id)
        return list(self.session.execute(query.order_by(DeliveryRow.seq.desc()).limit(limit)).scalars())

    def cancel_pending(self, target_id: str) -> None:
        self.session.execute(
            update(DeliveryRow)
            .where(DeliveryRow.target_id == target_id, DeliveryRow.state == "pending")
            .values(state="cancelled", lease_owner=None, lease_until=None)
        )

    def due_heads(self, now: datetime, limit: int, exclude_targets: set[str]) -> list[DeliveryRow]:
        """The oldest pending delivery of each target, when it is due and not leased: per-target order."""
        heads = (
            select(DeliveryRow.target_id, func.min(DeliveryRow.seq).label("seq"))
            .where(DeliveryRow.state == "pending")
            .group_by(DeliveryRow.target_id)
            .subquery()
        )
        query = (
            select(DeliveryRow)
            .join(heads, and_(DeliveryRow.seq == heads.c.seq))
            .where(
                DeliveryRow.next_attempt_at <= now,
                (DeliveryRow.lease_until.is_(None)) | (DeliveryRow.lease_until < now),
            )
            .order_by(DeliveryRow.next_attempt_at, DeliveryRow.seq)
            .limit(limit + len(exclude_targets))
        )
        rows = [row for row in self.session.execute(query).scalars() if row.target_id not in exclude_targets]
        return rows[:limit]

    def claim(self, seq: int, owner: str, now: datetime, lease_until: datetime) -> bool:
        """Take the lease atomically: only one instance wins a given delivery attempt."""
        result = self.session.execute(
            update(DeliveryRow)
            .where(
                DeliveryRow.seq == seq,
                DeliveryRow.state == "pending",
                (DeliveryRow.lease_until.is_(None)) | (DeliveryRow.lease_until < now),
            )
            .values(lease_owner=owner, lease_until=lease_until)
        )
        return result.rowcount == 1

    def leased(self, seq: int, owner: str) -> DeliveryRow | None:
        query = select(DeliveryRow).where(
            DeliveryRow.seq == seq, DeliveryRow.lease_owner == owner, DeliveryRow.state == "pending"
        )
        if is_postgres(self.session.get_bind()):
            query = query.with_for_update()
        return self.session.execute(query).scalars().first()

    def next_due_at(self) -> datetime | None:
        query = select(func.min(DeliveryRow.next_attempt_at)).where(DeliveryRow.state == "pending")
        return self.session.execute(query).scalar()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
