"""One function per command, one signature `handler(command, uow, deps)`; the message bus looks them up here.

A handler enters its unit of work and commits once, at its end; a refusal is raised (never committed first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.notifications import commands
from services.notifications.handlers.deliveries import claim_due, record_attempt
from services.notifications.handlers.feed import acknowledge, record_feed_read, store_notification
from services.notifications.handlers.subscriptions import (
    create_nde_subscription,
    create_subscription,
    delete_subscription,
    queue_heartbeats,
)
from services.notifications.handlers.webhooks import delete_webhook, redeliver, register_webhook

Handler = Callable[[Any, Any, Any], Any]

HANDLERS: dict[type, Handler] = {
    commands.StoreNotification: store_notification,
    commands.AcknowledgeNotification: acknowledge,
    commands.RecordFeedRead: record_feed_read,
    commands.RegisterWebhook: register_webhook,
    commands.DeleteWebhook: delete_webhook,
    commands.RedeliverDelivery: redeliver,
    commands.CreateSubscription: create_subscription,
    commands.CreateNdeSubscription: create_nde_subscription,
    commands.DeleteSubscription: delete_subscription,
    commands.QueueHeartbeats: queue_heartbeats,
    commands.ClaimDueDeliveries: claim_due,
    commands.RecordDeliveryAttempt: record_attempt,
}
