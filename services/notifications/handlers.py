"""One function per command or event; each takes the unit of work. Only the unit of work commits."""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.notifications import fhir
from services.notifications.adapters.orm import (
    DeliveryRow,
    NotificationRow,
    SubscriptionEventRow,
    SubscriptionRow,
    WebhookRow,
)
from services.notifications.domain import Notification, check_endpoint_url, matches
from services.notifications.uow import NotificationsUnitOfWork
from shared.auth import Principal
from shared.errors import Conflict, NotFound, Unprocessable
from shared.events import TOPIC_RECEIPTS, EventType

# Ids Relais derives in this service (read receipts): stable, so a repeated ack never sends a second receipt.
_NAMESPACE = uuid.UUID("b7c54a8e-2f1e-4c4f-9a53-41d2c0f6e8a1")
MIN_SECRET_LENGTH = 16


def utcnow() -> datetime:
    return datetime.now(UTC)


def receipt_id(notification_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{notification_id}|read"))


# --- Commands ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AcknowledgeNotification:
    principal: Principal
    notification_id: str


@dataclass(frozen=True)
class RegisterWebhook:
    principal: Principal
    url: str
    secret: str | None
    environment: str


@dataclass(frozen=True)
class DeleteWebhook:
    principal: Principal
    webhook_id: str


@dataclass(frozen=True)
class RedeliverDelivery:
    principal: Principal
    delivery_id: str


@dataclass(frozen=True)
class CreateSubscription:
    principal: Principal
    request: fhir.SubscriptionRequest


@dataclass(frozen=True)
class DeleteSubscription:
    principal: Principal
    subscription_id: str


# --- Access -------------------------------------------------------------------------------------


def not_found(uow: NotificationsUnitOfWork, principal: Principal, action: str, resource: str) -> NotFound:
    """Record the miss (another organisation's id, or a guess) in the audit log; the caller raises the 404."""
    uow.audit.record(
        action,
        outcome="not-found",
        organisation_id=principal.organisation_id,
        role=principal.role.value,
        resource=resource,
    )
    uow.commit()
    return NotFound(f"{resource} not found")


# --- Consuming notifications --------------------------------------------------------------------


def _delivery(
    *,
    org_id: str,
    target_kind: str,
    target_id: str,
    kind: str,
    dedup_key: str,
    url: str,
    body: str,
    notification_id: str | None,
    now: datetime,
) -> DeliveryRow:
    return DeliveryRow(
        id=str(uuid.uuid4()),
        org_id=org_id,
        target_kind=target_kind,
        target_id=target_id,
        kind=kind,
        dedup_key=dedup_key,
        notification_id=notification_id,
        url=url,
        body=body,
        state="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )


def _json(body: dict) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def store_notification(uow: NotificationsUnitOfWork, notification: Notification) -> bool:
    """Store a notification for its recipient and queue it for the recipient's webhooks and subscriptions."""
    if uow.notifications.exists(notification.id):
        return False  # same envelope id seen by another consumer path: already stored and fanned out
    now = utcnow()
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
    for webhook in uow.webhooks.active_for(notification.recipient):
        uow.deliveries.add(
            _delivery(
                org_id=webhook.org_id,
                target_kind="webhook",
                target_id=webhook.id,
                kind="notification",
                dedup_key=f"n:{row.id}",
                url=webhook.url,
                body=_json(fhir.webhook_body(row)),
                notification_id=row.id,
                now=now,
            )
        )
    for subscription in uow.subscriptions.live_for(notification.recipient, lock=True):
        if not matches(subscription.topic, subscription.filters, notification):
            continue
        subscription.events_since_start += 1
        number = subscription.events_since_start
        uow.subscriptions.add(
            SubscriptionEventRow(
                subscription_id=subscription.id, event_number=number, notification_id=row.id, occurred_at=now
            )
        )
        body = fhir.notification_bundle(
            subscription, "event-notification", [fhir.EventView(number, now, row)]
        )
        uow.deliveries.add(
            _delivery(
                org_id=subscription.org_id,
                target_kind="subscription",
                target_id=subscription.id,
                kind="event-notification",
                dedup_key=f"e:{number}",
                url=subscription.endpoint,
                body=_json(body),
                notification_id=row.id,
                now=now,
            )
        )
        subscription.last_sent_at = now
    return True


# --- Feed ---------------------------------------------------------------------------------------


def acknowledge(uow: NotificationsUnitOfWork, cmd: AcknowledgeNotification) -> NotificationRow:
    """The first ack publishes `notification.read` to the sender, later acks change nothing."""
    org = cmd.principal.organisation_id
    row = uow.notifications.get_for(org, cmd.notification_id)
    if row is None:
        raise not_found(uow, cmd.principal, "notification.ack", f"notification/{cmd.notification_id}")
    if row.read_at is None:
        row.read_at = utcnow()
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


# --- Webhooks -----------------------------------------------------------------------------------


def register_webhook(uow: NotificationsUnitOfWork, cmd: RegisterWebhook) -> tuple[WebhookRow, str | None]:
    """Returns the webhook, and the secret when Relais generated it (shown once)."""
    url = check_endpoint_url(cmd.url, cmd.environment)
    generated = None
    secret = cmd.secret
    if secret is None:
        secret = generated = secrets.token_urlsafe(32)
    elif len(secret) < MIN_SECRET_LENGTH or len(secret) > 200:
        raise Unprocessable(
            f"the secret must have {MIN_SECRET_LENGTH} to 200 characters", expression=["secret"]
        )
    org = cmd.principal.organisation_id
    if any(w.url == url for w in uow.webhooks.active_for(org)):
        raise Conflict("this endpoint is already registered; delete it first to change its secret")
    row = WebhookRow(
        id=str(uuid.uuid4()), org_id=org, url=url, secret=secret, active=True, created_at=utcnow()
    )
    uow.webhooks.add(row)
    uow.audit.record(
        "webhook.register",
        outcome="ok",
        organisation_id=org,
        role=cmd.principal.role.value,
        resource=f"webhook/{row.id}",
    )
    uow.commit()
    return row, generated


def delete_webhook(uow: NotificationsUnitOfWork, cmd: DeleteWebhook) -> None:
    row = uow.webhooks.get_for(cmd.principal.organisation_id, cmd.webhook_id)
    if row is None:
        raise not_found(uow, cmd.principal, "webhook.delete", f"webhook/{cmd.webhook_id}")
    row.active = False
    row.deleted_at = utcnow()
    uow.deliveries.cancel_pending(row.id)
    uow.audit.record(
        "webhook.delete",
        outcome="ok",
        organisation_id=row.org_id,
        role=cmd.principal.role.value,
        resource=f"webhook/{row.id}",
    )
    uow.commit()


def redeliver(uow: NotificationsUnitOfWork, cmd: RedeliverDelivery) -> DeliveryRow:
    """Put a dead (or delivered) delivery back in its queue with a fresh attempt budget."""
    row = uow.deliveries.get_for(cmd.principal.organisation_id, cmd.delivery_id)
    if row is None:
        raise not_found(uow, cmd.principal, "delivery.redeliver", f"delivery/{cmd.delivery_id}")
    if row.state == "cancelled":
        raise Conflict("the webhook or subscription of this delivery was deleted")
    if row.state == "pending":
        return row  # already queued: redelivering twice must not send twice
    now = utcnow()
    row.state, row.attempts, row.next_attempt_at = "pending", 0, now
    row.lease_owner = row.lease_until = row.dead_at = None
    uow.audit.record(
        "delivery.redeliver",
        outcome="ok",
        organisation_id=row.org_id,
        role=cmd.principal.role.value,
        resource=f"delivery/{row.id}",
    )
    uow.commit()
    return row


# --- Subscriptions ------------------------------------------------------------------------------


def create_subscription(uow: NotificationsUnitOfWork, cmd: CreateSubscription) -> SubscriptionRow:
    """Store the Subscription as `requested` and queue its handshake; the handshake's success activates it."""
    now = utcnow()
    req = cmd.request
    row = SubscriptionRow(
        id=str(uuid.uuid4()),
        org_id=cmd.principal.organisation_id,
        topic=req.topic,
        filters=req.filters,
        endpoint=req.endpoint,
        headers=req.headers,
        content=req.content,
        heartbeat_seconds=req.heartbeat_seconds,
        status="requested",
        events_since_start=0,
        resource=req.resource,
        created_at=now,
        last_sent_at=now,
    )
    uow.subscriptions.add(row)
    uow.subscriptions.flush()
    uow.deliveries.add(
        _delivery(
            org_id=row.org_id,
            target_kind="subscription",
            target_id=row.id,
            kind="handshake",
            dedup_key="handshake",
            url=row.endpoint,
            body=_json(fhir.notification_bundle(row, "handshake")),
            notification_id=None,
            now=now,
        )
    )
    uow.audit.record(
        "subscription.create",
        outcome="ok",
        organisation_id=row.org_id,
        role=cmd.principal.role.value,
        resource=f"Subscription/{row.id}",
    )
    uow.commit()
    return row


def delete_subscription(uow: NotificationsUnitOfWork, cmd: DeleteSubscription) -> None:
    row = uow.subscriptions.get_for(cmd.principal.organisation_id, cmd.subscription_id)
    if row is None:
        raise not_found(uow, cmd.principal, "subscription.delete", f"Subscription/{cmd.subscription_id}")
    row.status = "off"
    uow.deliveries.cancel_pending(row.id)
    uow.audit.record(
        "subscription.delete",
        outcome="ok",
        organisation_id=row.org_id,
        role=cmd.principal.role.value,
        resource=f"Subscription/{row.id}",
    )
    uow.commit()


def enqueue_heartbeats(uow: NotificationsUnitOfWork, now: datetime) -> int:
    """Queue a heartbeat for each active subscription that sent nothing during its heartbeat period."""
    queued = 0
    for row in uow.subscriptions.heartbeat_due(now):
        if not uow.subscriptions.claim_heartbeat(row.id, row.last_sent_at, now):
            continue  # another instance queued it
        uow.deliveries.add(
            _delivery(
                org_id=row.org_id,
                target_kind="subscription",
                target_id=row.id,
                kind="heartbeat",
                dedup_key=f"hb:{now.isoformat()}",
                url=row.endpoint,
                body=_json(fhir.notification_bundle(row, "heartbeat")),
                notification_id=None,
                now=now,
            )
        )
        queued += 1
    uow.commit()
    return queued


def events_view(
    uow: NotificationsUnitOfWork, row: SubscriptionRow, since: int, until: int
) -> list[fhir.EventView]:
    events = uow.subscriptions.events(row.id, since, until)
    notifications = uow.notifications.by_ids([e.notification_id for e in events])
    return [
        fhir.EventView(e.event_number, e.occurred_at, notifications[e.notification_id])
        for e in events
        if e.notification_id in notifications
    ]


def lease_deadline(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)
