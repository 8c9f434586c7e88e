"""Read queries: feed pages, receipts, webhooks, deliveries, subscriptions and their events.

Each view opens its own unit of work, never commits, and returns rows detached from the closed session, so a
page is rendered after the transaction: a slow page never holds the database (on SQLite, its write lock)
while the consumer waits to store the next notification.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from services.notifications.adapters.orm import (
    DeliveryRow,
    DisclosureRow,
    NotificationRow,
    SubscriptionRow,
    WebhookRow,
)
from services.notifications.domain import Target
from services.notifications.fhir import EventView
from services.notifications.mssante.channel import TARGET_KIND as MAIL_TARGET_KIND
from services.notifications.uow import NotificationsUnitOfWork
from shared.errors import BadRequest

MAX_EVENTS_PER_QUERY = 500

T = TypeVar("T")


def _detached(uow: NotificationsUnitOfWork, value: T) -> T:
    uow.session.expunge_all()
    return value


def feed(uow: NotificationsUnitOfWork, org_id: str, after: int, limit: int) -> list[NotificationRow]:
    with uow:
        return _detached(uow, uow.notifications.feed(org_id, after, limit))


def disclosures(uow: NotificationsUnitOfWork, patient_key: str) -> list[DisclosureRow]:
    """The disclosure log of one patient, oldest first."""
    with uow:
        return _detached(uow, uow.disclosures.for_patient(patient_key))


def disclosure_json(row: DisclosureRow) -> dict[str, str | None]:
    return {
        "organisation": row.org_id,
        "role": row.role,
        "event": row.event,
        "detail": row.detail,
        "channel": row.channel,
        "at": row.at.isoformat() if row.at else None,
        "notification": row.notification_id,
    }


def receipts(uow: NotificationsUnitOfWork, sender_org_id: str, limit: int) -> list[NotificationRow]:
    with uow:
        return _detached(uow, uow.notifications.read_receipts_for_sender(sender_org_id, limit))


def webhooks(uow: NotificationsUnitOfWork, org_id: str) -> list[WebhookRow]:
    with uow:
        return _detached(uow, uow.webhooks.active_for(org_id))


def webhook(uow: NotificationsUnitOfWork, org_id: str, webhook_id: str) -> WebhookRow | None:
    with uow:
        return _detached(uow, uow.webhooks.get_for(org_id, webhook_id))


def deliveries(
    uow: NotificationsUnitOfWork, org_id: str, state: str | None, target_id: str | None, limit: int
) -> list[DeliveryRow]:
    with uow:
        return _detached(uow, uow.deliveries.list_for(org_id, state, target_id, limit))


def delivery(uow: NotificationsUnitOfWork, org_id: str, delivery_id: str) -> DeliveryRow | None:
    with uow:
        return _detached(uow, uow.deliveries.get_for(org_id, delivery_id))


def subscriptions(uow: NotificationsUnitOfWork, org_id: str) -> list[SubscriptionRow]:
    with uow:
        return _detached(uow, uow.subscriptions.list_for(org_id))


def subscription(uow: NotificationsUnitOfWork, org_id: str, subscription_id: str) -> SubscriptionRow | None:
    with uow:
        return _detached(uow, uow.subscriptions.get_for(org_id, subscription_id))


@dataclass(frozen=True)
class EventPage:
    subscription: SubscriptionRow
    events: Sequence[EventView]


def events_window(since: int | None, until: int | None, events_since_start: int) -> tuple[int, int]:
    """`$events` bounds: at most the last MAX_EVENTS_PER_QUERY events, never past the last one."""
    last = min(until or events_since_start, events_since_start)
    first = since or max(1, last - MAX_EVENTS_PER_QUERY + 1)
    if since and until and until < since:
        raise BadRequest("eventsUntilNumber is before eventsSinceNumber", expression=["eventsUntilNumber"])
    return first, min(last, first + MAX_EVENTS_PER_QUERY - 1)


def subscription_events(
    uow: NotificationsUnitOfWork, org_id: str, subscription_id: str, since: int | None, until: int | None
) -> EventPage | None:
    """Events `since`..`until` (inclusive) of one of the caller's subscriptions, with their notifications."""
    with uow:
        row = uow.subscriptions.get_for(org_id, subscription_id)
        if row is None:
            return None
        first, last = events_window(since, until, row.events_since_start)
        events = uow.subscriptions.events(row.id, first, last)
        notifications = uow.notifications.by_ids([e.notification_id for e in events])
        page = EventPage(
            row,
            [
                EventView(e.event_number, e.occurred_at, notifications[e.notification_id])
                for e in events
                if e.notification_id in notifications
            ],
        )
        return _detached(uow, page)


def nde_notification(
    uow: NotificationsUnitOfWork, org_id: str, notification_id: str
) -> tuple[SubscriptionRow, NotificationRow] | None:
    """One of the caller's notifications that an NdE subscription of the caller received, with that subscription."""
    with uow:
        notification = uow.notifications.get_for(org_id, notification_id)
        subscription = uow.subscriptions.nde_for_notification(org_id, notification_id) if notification else None
        if notification is None or subscription is None:
            return None
        return _detached(uow, (subscription, notification))


def delivery_target(uow: NotificationsUnitOfWork, target_kind: str, target_id: str) -> Target | None:
    """The secret of an active webhook or the channel headers of a live subscription; None once deleted."""
    with uow:
        if target_kind == MAIL_TARGET_KIND:
            return Target(None, ())  # removing the address cancels its pending mails
        if target_kind == "webhook":
            hook = uow.webhooks.get(target_id)
            return Target(hook.secret, ()) if hook is not None and hook.active else None
        sub = uow.subscriptions.get(target_id)
        return Target(None, tuple(sub.headers)) if sub is not None and sub.status != "off" else None
