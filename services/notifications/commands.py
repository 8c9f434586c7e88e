"""Commands the notifications entrypoints (routes, the bus consumer, the delivery worker) hand to the message bus."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from services.notifications.domain import Attempt, Claimed, Notification
from services.notifications.fhir import SubscriptionRequest
from shared.auth import Principal


@dataclass(frozen=True)
class StoreNotification:
    """A `relais.notify.*` record: store it for its recipient once per envelope id, fan it out."""

    notification: Notification
    consumer: str


@dataclass(frozen=True)
class RecordFeedRead:
    """The caller's feed returned these notifications: a disclosure by the feed channel."""

    org_id: str
    notification_ids: tuple[str, ...]


@dataclass(frozen=True)
class AcknowledgeNotification:
    principal: Principal
    notification_id: str


@dataclass(frozen=True)
class RegisterWebhook:
    principal: Principal
    url: str
    secret: str | None


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
    request: SubscriptionRequest


@dataclass(frozen=True)
class CreateNdeSubscription:
    """An NdE per-patient Subscription: active at once (the IG has no handshake), delivered by rest-hook."""

    principal: Principal
    request: SubscriptionRequest


@dataclass(frozen=True)
class DeleteSubscription:
    principal: Principal
    subscription_id: str


@dataclass(frozen=True)
class QueueHeartbeats:
    """Queue a heartbeat for each active subscription quiet for its whole heartbeat period."""

    now: datetime


@dataclass(frozen=True)
class ClaimDueDeliveries:
    """Lease up to `limit` due deliveries, the head of each target's queue, skipping targets in `busy` and
    organisations that already have `per_organisation` attempts in flight."""

    owner: str
    limit: int
    busy: frozenset[str] = frozenset()
    # Attempts in flight per organisation: an organisation at `per_organisation` gets nothing more now.
    inflight: Mapping[str, int] = field(default_factory=dict)
    per_organisation: int | None = None


@dataclass(frozen=True)
class RecordDeliveryAttempt:
    owner: str
    delivery: Claimed
    attempt: Attempt
