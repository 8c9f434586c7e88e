"""Pure rules of the notifications service: the notification contract, topics and filters, signatures,
backoff, cursors and endpoint URLs. No I/O here."""

from __future__ import annotations

import hashlib
import hmac
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from shared.errors import BadRequest, Unprocessable
from shared.events import TOPIC_NOTIFY_CPTS, TOPIC_NOTIFY_DAC, TOPIC_NOTIFY_TEAM

NOTIFY_TOPICS = (TOPIC_NOTIFY_TEAM, TOPIC_NOTIFY_CPTS, TOPIC_NOTIFY_DAC)
ROLES = frozenset({"team", "hospital", "cpts", "dac"})
DETAILS = frozenset({"full", "minimised", "organisational"})
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class InvalidNotification(ValueError):
    """A message on a notify topic that breaks the contract of docs/events.md; it goes to the DLQ."""


@dataclass(frozen=True)
class Notification:
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


def _optional_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidNotification(f"{name} must be a string")
    return value


def parse_notification(topic: str, envelope_id: str, sent_at: str, data: Mapping[str, Any]) -> Notification:
    """Check one `relais.notify.*` value against the contract; raise InvalidNotification if it breaks it."""
    if topic not in NOTIFY_TOPICS:
        raise InvalidNotification(f"{topic} is not a notify topic")
    if not FHIR_ID.match(envelope_id):
        raise InvalidNotification("envelope id must be a FHIR id (letters, digits, '-', '.'; at most 64)")
    recipient = _optional_str(data, "recipient")
    event = _optional_str(data, "event")
    if not recipient or not event:
        raise InvalidNotification("recipient and event are required")
    role, detail = data.get("role"), data.get("detail")
    if role not in ROLES:
        raise InvalidNotification(f"role must be one of {sorted(ROLES)}")
    if detail not in DETAILS:
        raise InvalidNotification(f"detail must be one of {sorted(DETAILS)}")
    # The CPTS is not a care provider: a full clinical payload on its topic is a routing bug, never stored.
    if topic == TOPIC_NOTIFY_CPTS and detail == "full":
        raise InvalidNotification(
            "a full notification on relais.notify.cpts is refused (CPTS gets minimised data)"
        )
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise InvalidNotification("payload must be an object")
    if detail == "full":
        if payload.get("resourceType") != "Bundle" or payload.get("type") != "message":
            raise InvalidNotification("a full notification carries a FHIR message Bundle")
    elif any(isinstance(value, dict | list) for value in payload.values()):
        raise InvalidNotification("a minimised payload is a flat object of scalar values")
    return Notification(
        id=envelope_id,
        topic=topic,
        recipient=recipient,
        role=role,
        detail=detail,
        event=event,
        patient_key=_optional_str(data, "patient_key"),
        sender=_optional_str(data, "sender"),
        subject=_optional_str(data, "subject"),
        payload=dict(payload),
        sent_at=sent_at,
    )


# --- Subscription topics ------------------------------------------------------------------------

TOPIC_BASE = "https://relais.example.org/fhir/SubscriptionTopic/"
SUBSCRIPTION_TOPICS: dict[str, str] = {
    name: TOPIC_BASE + name for name in ("admission", "discharge", "handoff", "snp")
}
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
        raise Unprocessable(
            f"filter criteria {criteria!r} has no parameter", expression=["Subscription.criteria"]
        )
    result: dict[str, str] = {}
    for name, value in pairs:
        if name not in FILTER_PARAMETERS:
            raise Unprocessable(
                f"unsupported filter parameter {name!r}; use {', '.join(sorted(FILTER_PARAMETERS))}",
                expression=["Subscription.criteria"],
            )
        if not value:
            raise Unprocessable(
                f"filter parameter {name!r} has no value", expression=["Subscription.criteria"]
            )
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

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def check_endpoint_url(url: str, environment: str, where: str = "url") -> str:
    """HTTPS only; plain HTTP to loopback is allowed outside production (tests, a developer's laptop)."""
    if not isinstance(url, str) or len(url) > 2000:
        raise Unprocessable("the endpoint must be a URL of at most 2000 characters", expression=[where])
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password:
        raise Unprocessable("the endpoint must be an absolute URL without credentials", expression=[where])
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and host in LOOPBACK_HOSTS and environment != "production":
        return url
    raise Unprocessable(
        "the endpoint must use https (http is allowed only to loopback outside production)",
        expression=[where],
    )
