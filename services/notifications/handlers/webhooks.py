"""Registering and deleting webhooks, and putting a delivery back in its queue."""

from __future__ import annotations

import secrets
import uuid

from services.notifications.adapters.orm import DeliveryRow, WebhookRow
from services.notifications.commands import DeleteWebhook, RedeliverDelivery, RegisterWebhook
from services.notifications.deps import NotificationsDeps
from services.notifications.domain import Missing
from services.notifications.uow import NotificationsUnitOfWork
from shared.channels import WEBHOOK_CHANNEL, admit, check_channel, url_validator
from shared.errors import Conflict, Unprocessable
from shared.validation import check_text

MIN_SECRET_LENGTH = 16


def register_webhook(
    command: RegisterWebhook, uow: NotificationsUnitOfWork, deps: NotificationsDeps
) -> tuple[WebhookRow, str | None]:
    """Returns the webhook, and the secret when Relais generated it (shown once)."""
    url = check_channel(WEBHOOK_CHANNEL, command.url, None, url_validator(deps.outbound)).address
    generated = None
    secret = command.secret
    if secret is None:
        secret = generated = secrets.token_urlsafe(32)
    elif len(secret) < MIN_SECRET_LENGTH or len(secret) > 200:
        raise Unprocessable(f"the secret must have {MIN_SECRET_LENGTH} to 200 characters", expression=["secret"])
    check_text(secret, "secret", 200)
    org = command.principal.organisation_id
    with uow:
        active = uow.webhooks.active_for(org)
        if any(w.url == url for w in active):
            raise Conflict("this endpoint is already registered; delete it first to change its secret")
        admit(WEBHOOK_CHANNEL, len(active), deps.settings.webhooks_max_per_organisation)
        row = WebhookRow(id=str(uuid.uuid4()), org_id=org, url=url, secret=secret, active=True, created_at=deps.clock())
        uow.webhooks.add(row)
        uow.audit.record(
            "webhook.register",
            outcome="ok",
            organisation_id=org,
            role=command.principal.role.value,
            resource=f"webhook/{row.id}",
        )
        uow.commit()
        return row, generated


def delete_webhook(command: DeleteWebhook, uow: NotificationsUnitOfWork, deps: NotificationsDeps) -> None:
    """Deactivate the webhook; its pending deliveries are cancelled."""
    with uow:
        row = uow.webhooks.get_for(command.principal.organisation_id, command.webhook_id)
        if row is None:
            raise Missing(command.principal, "webhook.delete", f"webhook/{command.webhook_id}")
        row.active = False
        row.deleted_at = deps.clock()
        uow.deliveries.cancel_pending(row.id)
        uow.audit.record(
            "webhook.delete",
            outcome="ok",
            organisation_id=row.org_id,
            role=command.principal.role.value,
            resource=f"webhook/{row.id}",
        )
        uow.commit()


def redeliver(command: RedeliverDelivery, uow: NotificationsUnitOfWork, deps: NotificationsDeps) -> DeliveryRow:
    """Put a dead (or delivered) delivery back in its queue with a fresh attempt budget."""
    with uow:
        row = uow.deliveries.get_for(command.principal.organisation_id, command.delivery_id)
        if row is None:
            raise Missing(command.principal, "delivery.redeliver", f"delivery/{command.delivery_id}")
        if row.state == "cancelled":
            raise Conflict("the webhook or subscription of this delivery was deleted")
        if row.state != "pending":  # already queued: redelivering twice must not send twice
            now = deps.clock()
            row.state, row.attempts, row.next_attempt_at = "pending", 0, now
            row.lease_owner = row.lease_until = row.dead_at = None
            uow.audit.record(
                "delivery.redeliver",
                outcome="ok",
                organisation_id=row.org_id,
                role=command.principal.role.value,
                resource=f"delivery/{row.id}",
            )
        uow.commit()
        return row
