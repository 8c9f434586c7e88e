"""Pure rules of the notifications service: the stored notification, topics and filters, signatures, delivery
outcomes and backoff, cursors and endpoint URLs. No I/O here."""

from __future__ import annotations

import hashlib
import hmac
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from shared.auth import Principal
from shared.contracts import InvalidContract, check_minimised_payload
from shared.contracts import parse_notification as parse_contract
from shared.errors import BadRequest, NotFound, Unprocessable
from shared.minimise import NotMinimised
from shared.outbound import OutboundPolicy, validate_endpoint_url

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

# A message on a notify topic that breaks the contract of docs/events.md; it goes to the DLQ.
InvalidNotification = InvalidContract


@dataclass(frozen=True)
class Notification:
    """A notification as this service stores it: the bus contract plus its envelope id, topic and time."""

    id: str
    topic: str
    recipient: str
    role: str
    detail: str
    event: str
    patient_key: str | None
    sender: str | None
    subject: str | None
    payload: dict[str, Any]
    sent_at: str


def parse_notification(topic: str, envelope_id: str, sent_at: str, data: Mapping[str, Any]) -> Notification:
    """Check one `relais.notify.*` value against the kernel's contract; the envelope id becomes a FHIR id."""
    if not FHIR_ID.match(envelope_id):
        raise InvalidNotification("envelope id must be a FHIR id (letters, digits, '-', '.'; at most 64)")
    contract = parse_contract(topic, data)
    try:
        check_minimised_payload(contract)  # defence in depth: the whitelist again, on receipt
    except NotMinimised as exc:
        raise InvalidNotification(str(exc)) from None
    return Notification(
        id=envelope_id,
        topic=topic,
        recipient=contract.recipient,
        role=contract.role.value,
        detail=contract.detail.value,
        event=contract.event,
        patient_key=contract.patient_key,
        sender=contract.sender,
        subject=contract.subject,
        payload=dict(contract.payload),
        sent_at=sent_at,
    )


class Missing(NotFound):
    """Not the caller's (another organisation's id, or a guess): answered 404 and audited as not-found."""

    def __init__(self, principal: Principal, action: str, resource: str) -> None:
        super().__init__(f"{resource} not found")
        self.principal, self.action, self.resource = principal, action, resource


# --- Subscription topics ------------------------------------------------------------------------

TOPIC_BASE = "https://relais.example.org/fhir/SubscriptionTopic/"
SUBSCRIPTION_TOPICS: dict[str, str] = {name: TOPIC_BASE + name for name in ("admission", "discharge", "handoff", "snp")}
_TOPIC_BY_EVENT_PREFIX = {
    "admission": "admission",
    "discharge": "discharge",
    # A missed or due follow-up is part of the discharge path.
    "followup": "discharge",
    "handoff": "handoff",
    "snp": "snp",
}
FILTER_PARAMETERS = frozenset({"event", "patient", "subject", "detail", "sender"})
CONTENT_TYPES = frozenset({"empty", "id-only", "full-resource"})


def topic_of_event(event: str) -> str | None:
    """The canonical URL of the subscription topic an event belongs to, if any."""
    name = _TOPIC_BY_EVENT_PREFIX.get(event.split(".", 1)[0])
    return SUBSCRIPTION_TOPICS[name] if name else None


def parse_filter(criteria: str) -> dict[str, str]:
    """`Encounter?event=discharge.recorded&patient=KEY` (the resource part is optional) -> {name: value}."""
    query = criteria.split("?", 1)[1] if "?" in criteria else criteria
    pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    if not pairs:
        raise Unprocessable(f"filter criteria {criteria!r} has no parameter", expression=["Subscription.criteria"])
    result: dict[str, str] = {}
    for name, value in pairs:
        if name not in FILTER_PARAMETERS:
            raise Unprocessable(
                f"unsupported filter parameter {name!r}; use {', '.join(sorted(FILTER_PARAMETERS))}",
                expression=["Subscription.criteria"],
            )
        if not value:
            raise Unprocessable(f"filter parameter {name!r} has no value", expression=["Subscription.criteria"])
        result[name] = value
    return result


def _field(notification: Notification, name: str) -> str | None:
    return {
        "event": notification.event,
        "patient": notification.patient_key,
        "subject": notification.subject,
        "detail": notification.detail,
        "sender": notification.sender,
    }[name]


def matches(topic: str, filters: list[dict[str, str]], notification: Notification) -> bool:
    """The notification belongs to the topic and satisfies at least one filter (each an AND of parameters)."""
    if topic_of_event(notification.event) != topic:
        return False
    if not filters:
        return True
    return any(all(_field(notification, k) == v for k, v in f.items()) for f in filters)


# --- Webhook signatures -------------------------------------------------------------------------

SIGNATURE_HEADER = "Relais-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify_signature(
    secret: str, header: str, body: bytes, now: float, tolerance: int = DEFAULT_TOLERANCE_SECONDS
) -> bool:
    """What a receiver does: parse `t=...,v1=...`, refuse old timestamps, compare in constant time."""
    fields: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in fields.get("v1", []))


# --- Retries ------------------------------------------------------------------------------------


def backoff_delay(attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): base·2^(n-1), capped, ±20 % jitter."""
    exponent = min(max(attempt, 1) - 1, 32)
    delay = min(base * (2**exponent), cap)
    # Jitter spreads the retries of many deliveries that failed together (e.g. after an outage).
    return delay * (0.8 + 0.4 * rand())


def is_dead(attempts: int, max_attempts: int) -> bool:
    return attempts >= max_attempts


# --- Delivery attempts --------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """A pending delivery this instance holds the lease of."""

    seq: int
    id: str
    target_kind: str  # webhook | subscription
    target_id: str
    kind: str  # notification | handshake | heartbeat | event-notification
    notification_id: str | None
    url: str
    body: str
    attempts: int
    org_id: str = ""


@dataclass(frozen=True)
class Target:
    """What a delivery needs of its webhook (the HMAC secret) or subscription (the channel headers)."""

    secret: str | None
    headers: tuple[str, ...]


@dataclass(frozen=True)
class Attempt:
    """The outcome of one POST."""

    ok: bool
    status: int | None
    error: str | None
    # A refusal that no retry can change (an SMTP 5xx): dead at once rather than after the last attempt.
    permanent: bool = False


TARGET_GONE = Attempt(False, None, "target deleted")


@dataclass(frozen=True)
class AfterAttempt:
    """What one attempt changes: the delivery's state and, for a subscription, its status."""

    outcome: str  # delivered | dead | retry
    retry_in: float | None
    subscription_status: str | None  # None: unchanged
    subscription_error: str | None


def after_attempt(
    attempt: Attempt,
    attempts: int,
    kind: str,
    subscription_status: str | None,
    *,
    max_attempts: int,
    backoff_base: float,
    backoff_cap: float,
    rand: Callable[[], float] = random.random,
) -> AfterAttempt:
    """`attempts` counts this one. A success activates a requested or failing subscription; the last failure
    puts it in error; any other failure retries after a backoff."""
    if attempt.ok:
        status = "active" if subscription_status in ("requested", "error") else None
        return AfterAttempt("delivered", None, status, None)
    if is_dead(attempts, max_attempts) or attempt.permanent:
        if subscription_status is None or subscription_status == "off":
            return AfterAttempt("dead", None, None, None)
        error = f"{kind} delivery failed {attempts} times: {attempt.error}"[:500]
        return AfterAttempt("dead", None, "error", error)
    return AfterAttempt("retry", backoff_delay(attempts, backoff_base, backoff_cap, rand), None, None)


def delivery_headers(item: Claimed, target: Target, body: bytes, now: int) -> dict[str, str]:
    """Relais' own headers of one POST: ids and, for a webhook, the signature (they win over channel headers)."""
    headers = {
        "Content-Type": "application/fhir+json",
        "User-Agent": "Relais-Notifications/0.1",
        "Relais-Delivery-Id": item.id,
        "Relais-Delivery-Kind": item.kind,
    }
    if item.notification_id:
        headers["Relais-Notification-Id"] = item.notification_id
    if target.secret is not None:
        headers[SIGNATURE_HEADER] = signature_header(target.secret, now, body)
    return headers


def channel_headers(target: Target) -> dict[str, str]:
    """A subscription's `channel.header` lines as a dict (checked again by the outbound client)."""
    headers: dict[str, str] = {}
    for header in target.headers:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    return headers


def lease_seconds(lease: float, timeout: float) -> float:
    # The lease must outlive one request, or a slow answer would let a second instance resend it.
    return max(lease, timeout * 2 + 1)


# --- Feed cursor --------------------------------------------------------------------------------


def parse_cursor(after: str | None) -> int:
    """The feed cursor is the last `seq` the caller saw, as a decimal string; empty means the beginning."""
    if after is None or after == "":
        return 0
    if not after.isdigit() or len(after) > 18:
        raise BadRequest("after must be a cursor returned by a previous feed call", expression=["after"])
    return int(after)


def page_limit(limit: int | None, default: int, maximum: int) -> int:
    if limit is None:
        return default
    if limit < 1:
        raise BadRequest("limit must be at least 1", expression=["limit"])
    return min(limit, maximum)


# --- Endpoints ----------------------------------------------------------------------------------

def check_endpoint_url(url: Any, policy: OutboundPolicy, where: str = "url") -> str:
    """The outbound policy's registration check: https (http only where allowed), no credentials, no inward or
    metadata host; the 422 never echoes the URL."""
    return validate_endpoint_url(url, policy, field=where)


def check_heartbeat(seconds: int | None, minimum: int) -> int | None:
    if seconds is not None and not minimum <= seconds <= 86_400:
        raise Unprocessable(
            f"the heartbeat period must be between {minimum} and 86400 seconds", expression=["Subscription.channel"]
        )
    return seconds
