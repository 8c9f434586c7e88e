"""FHIR shapes of the notifications service, built as dicts and validated through the pinned R4B models.

- A notification is a `Parameters` resource (id = notification id) whose `payload` parameter holds the
  FHIR message Bundle (full detail) or one part per field of the minimised payload.
- The feed is a `collection` Bundle of those, with the next cursor in `link[next]` and `meta.tag`.
- Subscription notifications are `history` Bundles whose first entry is the R4 SubscriptionStatus
  (`Parameters`, profile backport-subscription-status-r4), as the Subscriptions Backport IG defines.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from services.notifications.domain import (
    CONTENT_TYPES,
    SUBSCRIPTION_TOPICS,
    check_endpoint_url,
    parse_filter,
)
from shared.errors import Unprocessable
from shared.fhir.models import Bundle, Parameters, Subscription, to_json
from shared.fhir.outcome import outcome_from_validation_error

RELAIS_FHIR_BASE = "https://relais.example.org/fhir"
ORGANISATION_SYSTEM = "https://relais.example.org/fhir/sid/organisation"
CURSOR_TAG_SYSTEM = "https://relais.example.org/fhir/CodeSystem/feed-cursor"
NOTIFICATION_PROFILE = "https://relais.example.org/fhir/StructureDefinition/relais-notification"
RECEIPT_PROFILE = "https://relais.example.org/fhir/StructureDefinition/relais-read-receipt"

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
BACKPORT_SUBSCRIPTION = BACKPORT + "backport-subscription"
BACKPORT_STATUS_R4 = BACKPORT + "backport-subscription-status-r4"
BACKPORT_FILTER = BACKPORT + "backport-filter-criteria"
BACKPORT_CONTENT = BACKPORT + "backport-payload-content"
BACKPORT_HEARTBEAT = BACKPORT + "backport-heartbeat-period"
BACKPORT_TIMEOUT = BACKPORT + "backport-timeout"
BACKPORT_TOPIC_CANONICAL = BACKPORT + "capabilitystatement-subscriptiontopic-canonical"


def instant(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def full_url(notification_id: str) -> str:
    try:
        return f"urn:uuid:{uuid.UUID(notification_id)}"
    except ValueError:
        return f"{RELAIS_FHIR_BASE}/Parameters/{notification_id}"


@dataclass(frozen=True)
class NotificationView:
    """What the builders need of a stored notification (the ORM row satisfies it)."""

    id: str
    seq: int
    event: str
    role: str
    detail: str
    recipient_org_id: str
    sender_org_id: str | None
    patient_key: str | None
    subject: str | None
    payload: dict[str, Any]
    sent_at: str
    received_at: datetime
    read_at: datetime | None


def _org(org_id: str) -> dict[str, Any]:
    return {"system": ORGANISATION_SYSTEM, "value": org_id}


def _scalar_part(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"name": name, "valueBoolean": value}
    if isinstance(value, int):
        return {"name": name, "valueInteger": value}
    return {"name": name, "valueString": str(value)}


def notification_parameters(n: Any) -> dict[str, Any]:
    """A stored notification as an (unvalidated) Parameters dict; validated with its enclosing Bundle."""
    params: list[dict[str, Any]] = [
        {"name": "id", "valueString": n.id},
        {"name": "cursor", "valueString": str(n.seq)},
        {"name": "event", "valueCode": n.event},
        {"name": "role", "valueCode": n.role},
        {"name": "detail", "valueCode": n.detail},
        {"name": "recipient", "valueIdentifier": _org(n.recipient_org_id)},
    ]
    if n.sender_org_id:
        params.append({"name": "sender", "valueIdentifier": _org(n.sender_org_id)})
    if n.patient_key:
        params.append({"name": "patient-key", "valueString": n.patient_key})
    if n.subject:
        params.append({"name": "subject", "valueString": n.subject})
    if n.sent_at:
        params.append({"name": "sent", "valueString": n.sent_at})
    params.append({"name": "received", "valueInstant": instant(n.received_at)})
    if n.read_at:
        params.append({"name": "read", "valueInstant": instant(n.read_at)})
    if n.detail == "full":
        params.append({"name": "payload", "resource": n.payload})
    else:
        parts = [_scalar_part(k, v) for k, v in n.payload.items() if v is not None and v != ""]
        if parts:
            params.append({"name": "payload", "part": parts})
    return {
        "resourceType": "Parameters",
        "id": n.id,
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "parameter": params,
    }


def notification_resource(n: Any) -> dict[str, Any]:
    """One notification as a validated Parameters resource (the answer to `$ack`)."""
    return to_json(Parameters.model_validate(notification_parameters(n)))


def _validated_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    return to_json(Bundle.model_validate(bundle))


def feed_bundle(
    notifications: Sequence[Any], *, cursor: int, self_url: str, next_url: str, bundle_id: str | None = None
) -> dict[str, Any]:
    return _validated_bundle(
        {
            "resourceType": "Bundle",
            "id": bundle_id or str(uuid.uuid4()),
            "meta": {"tag": [{"system": CURSOR_TAG_SYSTEM, "code": str(cursor), "display": "next cursor"}]},
            "type": "collection",
            "timestamp": instant(datetime.now(UTC)),
            "link": [{"relation": "self", "url": self_url}, {"relation": "next", "url": next_url}],
            "entry": [
                {"fullUrl": full_url(n.id), "resource": notification_parameters(n)} for n in notifications
            ],
        }
    )


def webhook_body(notification: Any) -> dict[str, Any]:
    """What a webhook receives: a one-entry collection Bundle, the same shape as a feed page."""
    return _validated_bundle(
        {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "meta": {"tag": [{"system": CURSOR_TAG_SYSTEM, "code": str(notification.seq)}]},
            "type": "collection",
            "timestamp": instant(datetime.now(UTC)),
            "entry": [
                {"fullUrl": full_url(notification.id), "resource": notification_parameters(notification)}
            ],
        }
    )


def receipts_bundle(rows: Iterable[Any], self_url: str) -> dict[str, Any]:
    entries = []
    for n in rows:
        params = [
            {"name": "notification", "valueString": n.id},
            {"name": "reader", "valueIdentifier": _org(n.recipient_org_id)},
            {"name": "read", "valueInstant": instant(n.read_at)},
            {"name": "event", "valueCode": n.event},
        ]
        if n.subject:
            params.append({"name": "subject", "valueString": n.subject})
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "Parameters",
                    "meta": {"profile": [RECEIPT_PROFILE]},
                    "parameter": params,
                },
            }
        )
    return _validated_bundle(
        {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": "searchset",
            "total": len(entries),
            "link": [{"relation": "self", "url": self_url}],
            "entry": entries,
        }
    )


# --- Subscriptions (Backport IG) ---------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionRequest:
    topic: str
    filters: list[dict[str, str]]
    endpoint: str
    headers: list[str]
    content: str
    heartbeat_seconds: int | None
    resource: dict[str, Any]


def _extension_value(extensions: list[dict[str, Any]] | None, url: str) -> list[Any]:
    values = []
    for ext in extensions or []:
        if ext.get("url") == url:
            values.extend(v for k, v in ext.items() if k.startswith("value"))
    return values


def parse_subscription(body: Any, environment: str, default_heartbeat: int | None) -> SubscriptionRequest:
    """Validate a posted R4 Subscription against R4B and the Backport IG rules Relais supports."""
    if not isinstance(body, dict) or body.get("resourceType") != "Subscription":
        raise Unprocessable("expected a Subscription resource", expression=["Subscription"])
    body = {k: v for k, v in body.items() if k not in ("id", "meta")}
    body.setdefault("status", "requested")
    body.setdefault("reason", "Relais notifications")
    try:
        model = Subscription.model_validate(body)
    except ValidationError as exc:
        error = Unprocessable("the Subscription is not valid FHIR R4")
        error.issues = outcome_from_validation_error(exc, "Subscription")  # type: ignore[attr-defined]
        raise error from exc
    resource = to_json(model)
    topic = resource.get("criteria")
    if topic not in SUBSCRIPTION_TOPICS.values():
        raise Unprocessable(
            f"criteria must be one of the topics {', '.join(sorted(SUBSCRIPTION_TOPICS.values()))}",
            expression=["Subscription.criteria"],
        )
    criteria_ext = (resource.get("_criteria") or {}).get("extension")
    filters = [parse_filter(str(value)) for value in _extension_value(criteria_ext, BACKPORT_FILTER)]
    channel = resource.get("channel") or {}
    if channel.get("type") != "rest-hook":
        raise Unprocessable(
            "only the rest-hook channel is supported", expression=["Subscription.channel.type"]
        )
    endpoint = check_endpoint_url(channel.get("endpoint") or "", environment, "Subscription.channel.endpoint")
    if channel.get("payload", "application/fhir+json") not in ("application/fhir+json", "application/json"):
        raise Unprocessable(
            "payload must be application/fhir+json", expression=["Subscription.channel.payload"]
        )
    contents = _extension_value((channel.get("_payload") or {}).get("extension"), BACKPORT_CONTENT)
    content = str(contents[0]) if contents else "id-only"
    if content not in CONTENT_TYPES:
        raise Unprocessable(
            f"payload content must be one of {sorted(CONTENT_TYPES)}",
            expression=["Subscription.channel.payload"],
        )
    heartbeats = _extension_value(channel.get("extension"), BACKPORT_HEARTBEAT)
    heartbeat = int(heartbeats[0]) if heartbeats else default_heartbeat
    if heartbeat is not None and heartbeat < 1:
        raise Unprocessable(
            "the heartbeat period must be at least 1 second", expression=["Subscription.channel"]
        )
    headers = [str(h) for h in channel.get("header") or []]
    for header in headers:
        name, sep, _ = header.partition(":")
        if not sep or not name.strip() or any(c in header for c in "\r\n"):
            raise Unprocessable(
                "each channel header is 'Name: value'", expression=["Subscription.channel.header"]
            )
    return SubscriptionRequest(topic, filters, endpoint, headers, content, heartbeat, resource)


def subscription_resource(row: Any) -> dict[str, Any]:
    resource = dict(row.resource)
    resource["id"] = row.id
    resource["meta"] = {"profile": [BACKPORT_SUBSCRIPTION]}
    resource["status"] = row.status
    if row.error:
        resource["error"] = row.error
    else:
        resource.pop("error", None)
    return to_json(Subscription.model_validate(resource))


@dataclass(frozen=True)
class EventView:
    number: int
    occurred_at: datetime
    notification: Any  # a NotificationRow


def status_parameters(
    row: Any, kind: str, events: Sequence[EventView] = (), content: str | None = None
) -> dict[str, Any]:
    """The R4 SubscriptionStatus (a Parameters resource, profile backport-subscription-status-r4)."""
    content = content or row.content
    params: list[dict[str, Any]] = [
        {
            "name": "subscription",
            "valueReference": {"reference": f"{RELAIS_FHIR_BASE}/Subscription/{row.id}"},
        },
        {"name": "topic", "valueCanonical": row.topic},
        {"name": "status", "valueCode": row.status},
        {"name": "type", "valueCode": kind},
        # R4 has no integer64: the IG carries event counts as strings.
        {"name": "events-since-subscription-start", "valueString": str(row.events_since_start)},
    ]
    for event in events:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(event.number)},
            {"name": "timestamp", "valueInstant": instant(event.occurred_at)},
        ]
        if content != "empty":
            parts.append({"name": "focus", "valueReference": {"reference": full_url(event.notification.id)}})
        params.append({"name": "notification-event", "part": parts})
    if row.error:
        params.append({"name": "error", "valueCodeableConcept": {"text": row.error}})
    return {"resourceType": "Parameters", "meta": {"profile": [BACKPORT_STATUS_R4]}, "parameter": params}


def notification_bundle(
    row: Any, kind: str, events: Sequence[EventView] = (), content: str | None = None
) -> dict[str, Any]:
    """A Backport notification Bundle (type history): the status first, then the focus per content level."""
    content = content or row.content
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": status_parameters(row, kind, events, content),
            "request": {"method": "GET", "url": f"{RELAIS_FHIR_BASE}/Subscription/{row.id}/$status"},
            "response": {"status": "200"},
        }
    ]
    if content != "empty":
        for event in events:
            entry: dict[str, Any] = {
                "fullUrl": full_url(event.notification.id),
                "request": {"method": "POST", "url": "Parameters"},
                "response": {"status": "201"},
            }
            if content == "full-resource":
                entry["resource"] = notification_parameters(event.notification)
            entries.append(entry)
    return _validated_bundle(
        {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": "history",
            "timestamp": instant(datetime.now(UTC)),
            "entry": entries,
        }
    )


def status_bundle(row: Any) -> dict[str, Any]:
    """`$status`: a searchset Bundle holding the subscription's current SubscriptionStatus."""
    return _validated_bundle(
        {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": "searchset",
            "total": 1,
            "entry": [
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": status_parameters(row, "query-status"),
                    "search": {"mode": "match"},
                }
            ],
        }
    )


def capability_resources() -> list[dict[str, Any]]:
    """What /metadata announces: the Subscription resource, its operations and the supported topics."""
    return [
        {
            "type": "Subscription",
            "extension": [
                {"url": BACKPORT_TOPIC_CANONICAL, "valueCanonical": canonical}
                for canonical in SUBSCRIPTION_TOPICS.values()
            ],
            "supportedProfile": [BACKPORT_SUBSCRIPTION],
            "interaction": [
                {"code": "create"},
                {"code": "read"},
                {"code": "delete"},
                {"code": "search-type"},
            ],
            "operation": [
                {
                    "name": "status",
                    "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
                },
                {
                    "name": "events",
                    "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events",
                },
            ],
        }
    ]
