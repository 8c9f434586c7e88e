"""FHIR topic-based Subscriptions: create (with its handshake), turn off, queue heartbeats."""

from __future__ import annotations

import uuid

from services.notifications import fhir
from services.notifications.adapters.orm import SubscriptionRow
from services.notifications.commands import (
    CreateNdeSubscription,
    CreateSubscription,
    DeleteSubscription,
    QueueHeartbeats,
)
from services.notifications.deps import NotificationsDeps
from services.notifications.domain import Missing
from services.notifications.handlers.common import new_delivery
from services.notifications.uow import NotificationsUnitOfWork
from shared.channels import admit


def create_subscription(
    command: CreateSubscription, uow: NotificationsUnitOfWork, deps: NotificationsDeps
) -> SubscriptionRow:
    """Store the Subscription as `requested` and queue its handshake; the handshake's success activates it."""
    now = deps.clock()
    req = command.request
    with uow:
        _admit(command, uow, deps)
        row = SubscriptionRow(
            id=str(uuid.uuid4()),
            org_id=command.principal.organisation_id,
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
            new_delivery(
                org_id=row.org_id,
                target_kind="subscription",
                target_id=row.id,
                kind="handshake",
                dedup_key="handshake",
                url=row.endpoint,
                body=fhir.notification_bundle(row, "handshake"),
                notification_id=None,
                now=now,
            )
        )
        uow.audit.record(
            "subscription.create",
            outcome="ok",
            organisation_id=row.org_id,
            role=command.principal.role.value,
            resource=f"Subscription/{row.id}",
        )
        uow.commit()
        return row


def _admit(
    command: CreateSubscription | CreateNdeSubscription, uow: NotificationsUnitOfWork, deps: NotificationsDeps
) -> None:
    """The organisation's one cap of live Subscriptions, Backport and NdE alike (shared/channels.py)."""
    live = uow.subscriptions.live_for(command.principal.organisation_id, lock=True)
    admit(command.request.channel.kind, len(live), deps.settings.subscriptions_max_per_organisation)


def create_nde_subscription(
    command: CreateNdeSubscription, uow: NotificationsUnitOfWork, deps: NotificationsDeps
) -> SubscriptionRow:
    """Store the NdE Subscription, active: it filters what is already routed to the caller's organisation."""
    now = deps.clock()
    req = command.request
    with uow:
        _admit(command, uow, deps)
        row = SubscriptionRow(
            id=str(uuid.uuid4()),
            org_id=command.principal.organisation_id,
            topic=req.topic,
            filters=req.filters,
            endpoint=req.endpoint,
            headers=req.headers,
            content=req.content,
            heartbeat_seconds=None,
            status="active",
            events_since_start=0,
            resource=req.resource,
            created_at=now,
            last_sent_at=now,
        )
        uow.subscriptions.add(row)
        uow.audit.record(
            "subscription.create",
            outcome="ok",
            organisation_id=row.org_id,
            role=command.principal.role.value,
            resource=f"Subscription/{row.id}",
        )
        uow.commit()
        return row


def delete_subscription(command: DeleteSubscription, uow: NotificationsUnitOfWork, deps: NotificationsDeps) -> None:
    """Turn the Subscription off; its pending deliveries are cancelled."""
    with uow:
        row = uow.subscriptions.get_for(command.principal.organisation_id, command.subscription_id)
        if row is None:
            raise Missing(command.principal, "subscription.delete", f"Subscription/{command.subscription_id}")
        row.status = "off"
        uow.deliveries.cancel_pending(row.id)
        uow.audit.record(
            "subscription.delete",
            outcome="ok",
            organisation_id=row.org_id,
            role=command.principal.role.value,
            resource=f"Subscription/{row.id}",
        )
        uow.commit()


def queue_heartbeats(command: QueueHeartbeats, uow: NotificationsUnitOfWork, deps: NotificationsDeps) -> int:
    """Queue a heartbeat for each active subscription that sent nothing during its heartbeat period."""
    now = command.now
    queued = 0
    with uow:
        for row in uow.subscriptions.heartbeat_due(now):
            if not uow.subscriptions.claim_heartbeat(row.id, row.last_sent_at, now):
                continue  # another instance queued it
            uow.deliveries.add(
                new_delivery(
                    org_id=row.org_id,
                    target_kind="subscription",
                    target_id=row.id,
                    kind="heartbeat",
                    dedup_key=f"hb:{now.isoformat()}",
                    url=row.endpoint,
                    body=fhir.notification_bundle(row, "heartbeat"),
                    notification_id=None,
                    now=now,
                )
            )
            queued += 1
        uow.commit()
    return queued
