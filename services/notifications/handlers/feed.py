"""Storing notifications from the role topics and acknowledging them."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError

from services.notifications import fhir
from services.notifications.adapters.orm import NotificationRow, SubscriptionEventRow
from services.notifications.commands import AcknowledgeNotification, RecordFeedRead, StoreNotification
from services.notifications.deps import NotificationsDeps
from services.notifications.domain import Missing, Notification, matches
from services.notifications.fhir.nde import NDE_CONTENT, nde_matches, notification_request
from services.notifications.handlers.common import new_delivery
from services.notifications.mssante.channel import queue_mail
from services.notifications.uow import NotificationsUnitOfWork
from shared.db.uow import UnitOfWork, handle_once
from shared.events import TOPIC_RECEIPTS, EventType

# Ids Relais derives in this service (read receipts): stable, so a repeated ack never sends a second receipt.
_NAMESPACE = uuid.UUID("b7c54a8e-2f1e-4c4f-9a53-41d2c0f6e8a1")


def receipt_id(notification_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{notification_id}|read"))


def store_notification(command: StoreNotification, uow: NotificationsUnitOfWork, deps: NotificationsDeps) -> bool:
    """Once per envelope id (the inbox rides in the same transaction): store the notification for its
    recipient and queue it for the recipient's webhooks and matching subscriptions. False for a duplicate."""

    def store(_uow: UnitOfWork) -> None:
        _store(command.notification, uow, deps)

    return handle_once(uow, command.consumer, command.notification.id, store)


def _store(notification: Notification, uow: NotificationsUnitOfWork, deps: NotificationsDeps) -> None:
    if uow.notifications.exists(notification.id):
        return  # same envelope id seen by another consumer path: already stored and fanned out
    now = deps.clock()
    row = NotificationRow(
        id=notification.id,
        topic=notification.topic,
        recipient_org_id=notification.recipient,
        role=notification.role,
        detail=notification.detail,
        event=notification.event,
        patient_key=notification.patient_key,
        sender_org_id=notification.sender,
        subject=notification.subject,
        payload=notification.payload,
        sent_at=notification.sent_at,
        received_at=now,
    )
    uow.notifications.add(row)
    uow.notifications.flush()  # allocates seq, the feed cursor
    # Stored for its recipient from its role topic: the first disclosure, by the Kafka channel.
    uow.disclosures.record(row, notification.topic, now)
    for webhook in uow.webhooks.active_for(notification.recipient):
        uow.deliveries.add(
            new_delivery(
                org_id=webhook.org_id,
                target_kind="webhook",
                target_id=webhook.id,
                kind="notification",
                dedup_key=f"n:{row.id}",
                url=webhook.url,
                body=fhir.webhook_body(row, deps.names([row.recipient_org_id, row.sender_org_id or ""])),
                notification_id=row.id,
                now=now,
            )
        )
    for subscription in uow.subscriptions.live_for(notification.recipient, lock=True):
        nde = subscription.content == NDE_CONTENT
        if nde and not nde_matches(subscription.filters, notification, now):
            continue
        if not nde and not matches(subscription.topic, subscription.filters, notification):
            continue
        subscription.events_since_start += 1
        number = subscription.events_since_start
        uow.subscriptions.add(
            SubscriptionEventRow(
                subscription_id=subscription.id, event_number=number, notification_id=row.id, occurred_at=now
            )
        )
        uow.deliveries.add(
            new_delivery(
                org_id=subscription.org_id,
                target_kind="subscription",
                target_id=subscription.id,
                kind="event-notification",
                dedup_key=f"e:{number}",
                url=subscription.endpoint,
                body=(
                    notification_request(subscription, row)
                    if nde
                    else fhir.notification_bundle(
                        subscription, "event-notification", [fhir.EventView(number, now, row)]
                    )
                ),
                notification_id=row.id,
                now=now,
            )
        )
        subscription.last_sent_at = now
    queue_mail(row, uow, deps)  # the team's MSSanté mailbox, when it has one (docs/mssante.md)


def record_feed_read(command: RecordFeedRead, uow: NotificationsUnitOfWork, deps: NotificationsDeps) -> None:
    """Log the first feed read of each notification about a patient (the disclosure log)."""
    if not command.notification_ids:
        return
    with uow:
        now = deps.clock()
        for row in uow.notifications.for_ids(command.org_id, list(command.notification_ids)):
            uow.disclosures.record(row, "feed", now)
        try:
            uow.commit()
        except IntegrityError:
            uow.rollback()  # a concurrent read of the same page logged them first


def acknowledge(
    command: AcknowledgeNotification, uow: NotificationsUnitOfWork, deps: NotificationsDeps
) -> NotificationRow:
    """The first ack publishes `notification.read` to the sender, later acks change nothing."""
    org = command.principal.organisation_id
    with uow:
        row = uow.notifications.get_for(org, command.notification_id)
        if row is None:
            raise Missing(command.principal, "notification.ack", f"notification/{command.notification_id}")
        if row.read_at is None:
            row.read_at = deps.clock()
            if row.sender_org_id:
                uow.outbox.add(
                    TOPIC_RECEIPTS,
                    row.sender_org_id,
                    EventType.NOTIFICATION_READ.value,
                    {
                        "notification_id": row.id,
                        "reader": org,
                        "read_at": row.read_at.isoformat(),
                        "event": row.event,
                        "sender": row.sender_org_id,
                        "subject": row.subject,
                    },
                    message_id=receipt_id(row.id),
                )
        uow.commit()
        return row
