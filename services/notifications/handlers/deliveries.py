"""The delivery queue: lease the due head of each target's queue, record what an attempt gave."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import Counter

from services.notifications.commands import ClaimDueDeliveries, RecordDeliveryAttempt
from services.notifications.deps import NotificationsDeps
from services.notifications.domain import Claimed, after_attempt, lease_seconds
from services.notifications.uow import NotificationsUnitOfWork

DELIVERIES = Counter(
    "relais_notification_deliveries_total",
    "Webhook and subscription delivery attempts",
    ["target_kind", "outcome"],
)


def claim_due(command: ClaimDueDeliveries, uow: NotificationsUnitOfWork, deps: NotificationsDeps) -> list[Claimed]:
    """Per target only the oldest pending delivery is leased, so each endpoint receives in order."""
    settings = deps.settings
    now = deps.clock()
    until = now + timedelta(seconds=lease_seconds(settings.webhook_lease_seconds, settings.webhook_timeout_seconds))
    claimed: list[Claimed] = []
    room = dict(command.inflight)
    cap = command.per_organisation
    full = {org for org, n in room.items() if cap is not None and n >= cap}
    with uow:
        for row in uow.deliveries.due_heads(now, command.limit, set(command.busy), full):
            if cap is not None and room.get(row.org_id, 0) >= cap:
                continue  # fairness: this organisation has its share of the pool
            if row.seq is not None and uow.deliveries.claim(row.seq, command.owner, now, until):
                room[row.org_id] = room.get(row.org_id, 0) + 1
                claimed.append(
                    Claimed(
                        row.seq,
                        row.id,
                        row.target_kind,
                        row.target_id,
                        row.kind,
                        row.notification_id,
                        row.url,
                        row.body,
                        row.attempts,
                        row.org_id,
                    )
                )
        uow.commit()
    return claimed


def record_attempt(command: RecordDeliveryAttempt, uow: NotificationsUnitOfWork, deps: NotificationsDeps) -> None:
    """Count the attempt; the delivery is delivered, dead or retried later (domain.after_attempt)."""
    now = deps.clock()
    settings = deps.settings
    with uow:
        row = uow.deliveries.leased(command.delivery.seq, command.owner)
        if row is None:
            return  # our lease expired and another instance took over, or the target was deleted
        row.attempts += 1
        row.last_status = command.attempt.status
        row.last_error = command.attempt.error
        row.lease_owner = row.lease_until = None
        subscription = uow.subscriptions.get(row.target_id) if row.target_kind == "subscription" else None
        step = after_attempt(
            command.attempt,
            row.attempts,
            row.kind,
            subscription.status if subscription is not None else None,
            max_attempts=settings.webhook_max_attempts,
            backoff_base=settings.webhook_backoff_base_seconds,
            backoff_cap=settings.webhook_backoff_max_seconds,
            rand=deps.rand,
        )
        if step.outcome == "delivered":
            row.state, row.delivered_at = "delivered", now
            delivered = uow.notifications.by_id(row.notification_id) if row.notification_id else None
            if delivered is not None:
                uow.disclosures.record(delivered, row.target_kind, now)  # webhook or subscription
        elif step.outcome == "dead":
            row.state, row.dead_at = "dead", now
        elif step.retry_in is not None:
            row.next_attempt_at = now + timedelta(seconds=step.retry_in)
        if subscription is not None and step.subscription_status is not None:
            subscription.status, subscription.error = step.subscription_status, step.subscription_error
        uow.commit()
    DELIVERIES.labels(row.target_kind, step.outcome).inc()
