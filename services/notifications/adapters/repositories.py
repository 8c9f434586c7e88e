"""Queries of the notifications service; they add and read, only the unit of work commits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, and_, func, select, update
from sqlmodel import col

from services.notifications.adapters.orm import (
    DeliveryRow,
    DisclosureRow,
    NotificationRow,
    SubscriptionEventRow,
    SubscriptionRow,
    WebhookRow,
)
from shared.db.engine import is_postgres
from shared.db.repository import Repository


class NotificationRepository(Repository):
    def exists(self, notification_id: str) -> bool:
        query = select(col(NotificationRow.seq)).where(col(NotificationRow.id) == notification_id)
        return self.session.execute(query).first() is not None

    def get_for(self, org_id: str, notification_id: str) -> NotificationRow | None:
        query = select(NotificationRow).where(
            col(NotificationRow.id) == notification_id, col(NotificationRow.recipient_org_id) == org_id
        )
        return self.session.execute(query).scalars().first()

    def by_id(self, notification_id: str) -> NotificationRow | None:
        query = select(NotificationRow).where(col(NotificationRow.id) == notification_id)
        return self.session.execute(query).scalars().first()

    def for_ids(self, org_id: str, notification_ids: list[str]) -> list[NotificationRow]:
        query = select(NotificationRow).where(
            col(NotificationRow.recipient_org_id) == org_id, col(NotificationRow.id).in_(notification_ids)
        )
        return list(self.session.execute(query).scalars())

    def feed(self, org_id: str, after: int, limit: int) -> list[NotificationRow]:
        query = (
            select(NotificationRow)
            .where(col(NotificationRow.recipient_org_id) == org_id, col(NotificationRow.seq) > after)
            .order_by(col(NotificationRow.seq))
            .limit(limit)
        )
        return list(self.session.execute(query).scalars())

    def by_ids(self, ids: list[str]) -> dict[str, NotificationRow]:
        if not ids:
            return {}
        query = select(NotificationRow).where(col(NotificationRow.id).in_(ids))
        return {row.id: row for row in self.session.execute(query).scalars()}

    def read_receipts_for_sender(self, sender_org_id: str, limit: int) -> list[NotificationRow]:
        query = (
            select(NotificationRow)
            .where(col(NotificationRow.sender_org_id) == sender_org_id, col(NotificationRow.read_at).is_not(None))
            .order_by(col(NotificationRow.read_at).desc(), col(NotificationRow.seq).desc())
            .limit(limit)
        )
        return list(self.session.execute(query).scalars())


class WebhookRepository(Repository):
    def get_for(self, org_id: str, webhook_id: str) -> WebhookRow | None:
        query = select(WebhookRow).where(
            col(WebhookRow.id) == webhook_id, col(WebhookRow.org_id) == org_id, col(WebhookRow.active).is_(True)
        )
        return self.session.execute(query).scalars().first()

    def get(self, webhook_id: str) -> WebhookRow | None:
        return self.session.get(WebhookRow, webhook_id)

    def active_for(self, org_id: str) -> list[WebhookRow]:
        query = (
            select(WebhookRow)
            .where(col(WebhookRow.org_id) == org_id, col(WebhookRow.active).is_(True))
            .order_by(col(WebhookRow.created_at), col(WebhookRow.id))
        )
        return list(self.session.execute(query).scalars())


class SubscriptionRepository(Repository):
    LIVE = ("requested", "active", "error")

    def get_for(self, org_id: str, subscription_id: str) -> SubscriptionRow | None:
        query = select(SubscriptionRow).where(
            col(SubscriptionRow.id) == subscription_id, col(SubscriptionRow.org_id) == org_id
        )
        return self.session.execute(query).scalars().first()

    def get(self, subscription_id: str, *, lock: bool = False) -> SubscriptionRow | None:
        query = select(SubscriptionRow).where(col(SubscriptionRow.id) == subscription_id)
        if lock and is_postgres(self.session.get_bind()):
            query = query.with_for_update()
        return self.session.execute(query).scalars().first()

    def list_for(self, org_id: str) -> list[SubscriptionRow]:
        query = (
            select(SubscriptionRow)
            .where(col(SubscriptionRow.org_id) == org_id)
            .order_by(col(SubscriptionRow.created_at))
        )
        return list(self.session.execute(query).scalars())

    def live_for(self, org_id: str, *, lock: bool = False) -> list[SubscriptionRow]:
        query = (
            select(SubscriptionRow)
            .where(col(SubscriptionRow.org_id) == org_id, col(SubscriptionRow.status).in_(self.LIVE))
            .order_by(col(SubscriptionRow.created_at), col(SubscriptionRow.id))
        )
        if lock and is_postgres(self.session.get_bind()):
            # Event numbers are a per-subscription counter: serialise writers of the same subscription.
            query = query.with_for_update()
        return list(self.session.execute(query).scalars())

    def heartbeat_due(self, now: datetime) -> list[SubscriptionRow]:
        query = select(SubscriptionRow).where(
            col(SubscriptionRow.status) == "active", col(SubscriptionRow.heartbeat_seconds).is_not(None)
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
            col(SubscriptionRow.last_sent_at).is_(None)
            if seen_last_sent is None
            else col(SubscriptionRow.last_sent_at) == seen_last_sent
        )
        result = self.session.execute(
            update(SubscriptionRow)
            .where(col(SubscriptionRow.id) == subscription_id, condition)
            .values(last_sent_at=now)
        )
        return cast(CursorResult[Any], result).rowcount == 1

    def events(self, subscription_id: str, since: int, until: int) -> list[SubscriptionEventRow]:
        query = (
            select(SubscriptionEventRow)
            .where(
                col(SubscriptionEventRow.subscription_id) == subscription_id,
                col(SubscriptionEventRow.event_number) >= since,
                col(SubscriptionEventRow.event_number) <= until,
            )
            .order_by(col(SubscriptionEventRow.event_number))
        )
        return list(self.session.execute(query).scalars())


    def nde_for_notification(self, org_id: str, notification_id: str) -> SubscriptionRow | None:
        """The caller's NdE subscription that received this notification (the first, if several did)."""
        query = (
            select(SubscriptionRow)
            .join(SubscriptionEventRow, col(SubscriptionEventRow.subscription_id) == col(SubscriptionRow.id))
            .where(
                col(SubscriptionEventRow.notification_id) == notification_id,
                col(SubscriptionRow.org_id) == org_id,
                col(SubscriptionRow.content) == "nde",
            )
            .order_by(col(SubscriptionRow.created_at))
        )
        return self.session.execute(query).scalars().first()


class DeliveryRepository(Repository):
    def get_for(self, org_id: str, delivery_id: str) -> DeliveryRow | None:
        query = select(DeliveryRow).where(col(DeliveryRow.id) == delivery_id, col(DeliveryRow.org_id) == org_id)
        return self.session.execute(query).scalars().first()

    def get(self, delivery_id: str) -> DeliveryRow | None:
        query = select(DeliveryRow).where(col(DeliveryRow.id) == delivery_id)
        return self.session.execute(query).scalars().first()

    def list_for(self, org_id: str, state: str | None, target_id: str | None, limit: int) -> list[DeliveryRow]:
        query = select(DeliveryRow).where(col(DeliveryRow.org_id) == org_id)
        if state:
            query = query.where(col(DeliveryRow.state) == state)
        if target_id:
            query = query.where(col(DeliveryRow.target_id) == target_id)
        return list(self.session.execute(query.order_by(col(DeliveryRow.seq).desc()).limit(limit)).scalars())

    def cancel_pending(self, target_id: str) -> None:
        self.session.execute(
            update(DeliveryRow)
            .where(col(DeliveryRow.target_id) == target_id, col(DeliveryRow.state) == "pending")
            .values(state="cancelled", lease_owner=None, lease_until=None)
        )

    def due_heads(
        self, now: datetime, limit: int, exclude_targets: set[str], exclude_orgs: set[str] | None = None
    ) -> list[DeliveryRow]:
        """The oldest pending delivery of each target, when it is due and not leased: per-target order.
        Organisations in `exclude_orgs` (their share of the pool is in use) are skipped in the query itself, so
        their backlog cannot fill the page and hide the others'."""
        heads = (
            select(col(DeliveryRow.target_id), func.min(col(DeliveryRow.seq)).label("seq"))
            .where(col(DeliveryRow.state) == "pending")
            .group_by(col(DeliveryRow.target_id))
            .subquery()
        )
        query = (
            select(DeliveryRow)
            .join(heads, and_(col(DeliveryRow.seq) == heads.c.seq))
            .where(
                col(DeliveryRow.next_attempt_at) <= now,
                (col(DeliveryRow.lease_until).is_(None)) | (col(DeliveryRow.lease_until) < now),
            )
            .order_by(col(DeliveryRow.next_attempt_at), col(DeliveryRow.seq))
            .limit(limit + len(exclude_targets))
        )
        if exclude_orgs:
            query = query.where(col(DeliveryRow.org_id).not_in(sorted(exclude_orgs)))
        rows = [row for row in self.session.execute(query).scalars() if row.target_id not in exclude_targets]
        return rows[:limit]

    def claim(self, seq: int, owner: str, now: datetime, lease_until: datetime) -> bool:
        """Take the lease atomically: only one instance wins a given delivery attempt."""
        result = self.session.execute(
            update(DeliveryRow)
            .where(
                col(DeliveryRow.seq) == seq,
                col(DeliveryRow.state) == "pending",
                (col(DeliveryRow.lease_until).is_(None)) | (col(DeliveryRow.lease_until) < now),
            )
            .values(lease_owner=owner, lease_until=lease_until)
        )
        return cast(CursorResult[Any], result).rowcount == 1

    def leased(self, seq: int, owner: str) -> DeliveryRow | None:
        query = select(DeliveryRow).where(
            col(DeliveryRow.seq) == seq, col(DeliveryRow.lease_owner) == owner, col(DeliveryRow.state) == "pending"
        )
        if is_postgres(self.session.get_bind()):
            query = query.with_for_update()
        return self.session.execute(query).scalars().first()

    def next_due_at(self) -> datetime | None:
        query = select(func.min(col(DeliveryRow.next_attempt_at))).where(col(DeliveryRow.state) == "pending")
        return self.session.execute(query).scalar()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class DisclosureRepository(Repository):
    def record(self, notification: NotificationRow, channel: str, at: datetime) -> None:
        """Log that ``notification`` reached its recipient by ``channel`` (the first time only; organisational
        notifications carry no patient key and disclose nothing about a person)."""
        if not notification.patient_key:
            return
        query = select(col(DisclosureRow.id)).where(
            col(DisclosureRow.notification_id) == notification.id, col(DisclosureRow.channel) == channel
        )
        if self.session.execute(query).first() is not None:
            return
        self.session.add(
            DisclosureRow(
                patient_key=notification.patient_key,
                notification_id=notification.id,
                org_id=notification.recipient_org_id,
                role=notification.role,
                event=notification.event,
                detail=notification.detail,
                channel=channel,
                at=at,
            )
        )

    def for_patient(self, patient_key: str) -> list[DisclosureRow]:
        query = (
            select(DisclosureRow)
            .where(col(DisclosureRow.patient_key) == patient_key)
            .order_by(col(DisclosureRow.at), col(DisclosureRow.id))
        )
        return list(self.session.execute(query).scalars())
