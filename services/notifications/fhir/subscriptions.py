"""FHIR shapes of topic-based Subscriptions (Subscriptions Backport IG, R4): notifications are `history`
Bundles whose first entry is the R4 SubscriptionStatus (`Parameters`, profile backport-subscription-status-r4)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from services.notifications.domain import CONTENT_TYPES, SUBSCRIPTION_TOPICS, check_heartbeat, parse_filter
from services.notifications.fhir.common import (
    BACKPORT_CONTENT,
    BACKPORT_FILTER,
    BACKPORT_HEARTBEAT,
    BACKPORT_STATUS_R4,
    BACKPORT_SUBSCRIPTION,
    BACKPORT_TOPIC_CANONICAL,
    RELAIS_FHIR_BASE,
    full_url,
    instant,
    validated_bundle,
)
from services.notifications.fhir.feed import notification_parameters
from shared.channels import BACKPORT_CHANNEL, Channel, check_channel, url_validator
from shared.errors import Unprocessable
from shared.fhir.models import Subscription, to_json
from shared.fhir.nde import SUBSCRIPTION_PROFILE
from shared.fhir.outcome import outcome_from_validation_error
from shared.outbound import OutboundPolicy
from shared.validation import check_int


class InvalidSubscription(Unprocessable):
    """A posted Subscription that is not valid R4; its issues say where."""

    def __init__(self, exc: ValidationError) -> None:
        super().__init__("the Subscription is not valid FHIR R4")
        self.issues = outcome_from_validation_error(exc, "Subscription")


@dataclass(frozen=True)
class SubscriptionRequest:
    topic: str
    filters: list[dict[str, str]]
    channel: Channel  # checked by the one channel path (shared/channels.py)
    content: str
    heartbeat_seconds: int | None
    resource: dict[str, Any]

    @property
    def endpoint(self) -> str:
        return self.channel.address

    @property
    def headers(self) -> list[str]:
        return self.channel.header_lines()


def _extension_value(extensions: list[dict[str, Any]] | None, url: str) -> list[Any]:
    values: list[Any] = []
    for ext in extensions or []:
        if ext.get("url") == url:
            values.extend(v for k, v in ext.items() if k.startswith("value"))
    return values


def parse_subscription(
    body: Any, policy: OutboundPolicy, default_heartbeat: int | None, min_heartbeat: int = 1
) -> SubscriptionRequest:
    """Validate a posted R4 Subscription against R4B and the Backport IG rules Relais supports; the endpoint
    and channel headers against the outbound policy."""
    if not isinstance(body, dict) or body.get("resourceType") != "Subscription":
        raise Unprocessable("expected a Subscription resource", expression=["Subscription"])
    body = {k: v for k, v in body.items() if k not in ("id", "meta")}
    body.setdefault("status", "requested")
    body.setdefault("reason", "Relais notifications")
    try:
        model = Subscription.model_validate(body)
    except ValidationError as exc:
        raise InvalidSubscription(exc) from exc
    resource = to_json(model)
    topic = resource.get("criteria")
    if not isinstance(topic, str) or topic not in SUBSCRIPTION_TOPICS.values():
        raise Unprocessable(
            f"criteria must be one of the topics {', '.join(sorted(SUBSCRIPTION_TOPICS.values()))}",
            expression=["Subscription.criteria"],
        )
    criteria_ext = (resource.get("_criteria") or {}).get("extension")
    filters = [parse_filter(str(value)) for value in _extension_value(criteria_ext, BACKPORT_FILTER)]
    channel = resource.get("channel") or {}
    if channel.get("type") != "rest-hook":
        raise Unprocessable("only the rest-hook channel is supported", expression=["Subscription.channel.type"])
    checked = check_channel(
        BACKPORT_CHANNEL, channel.get("endpoint") or "", channel.get("header"), url_validator(policy)
    )
    if channel.get("payload", "application/fhir+json") not in ("application/fhir+json", "application/json"):
        raise Unprocessable("payload must be application/fhir+json", expression=["Subscription.channel.payload"])
    contents = _extension_value((channel.get("_payload") or {}).get("extension"), BACKPORT_CONTENT)
    content = str(contents[0]) if contents else "id-only"
    if content not in CONTENT_TYPES:
        raise Unprocessable(
            f"payload content must be one of {sorted(CONTENT_TYPES)}",
            expression=["Subscription.channel.payload"],
        )
    heartbeats = _extension_value(channel.get("extension"), BACKPORT_HEARTBEAT)
    heartbeat = default_heartbeat
    if heartbeats:  # the operator's default may be anything; a registrant's own period has a floor
        heartbeat = check_heartbeat(check_int(heartbeats[0], "Subscription.channel.heartbeatPeriod"), min_heartbeat)
    return SubscriptionRequest(topic, filters, checked, content, heartbeat, resource)


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
    return validated_bundle(
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
    return validated_bundle(
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


def searchset_bundle(rows: Sequence[Any]) -> dict[str, Any]:
    """The caller's Subscriptions as a searchset Bundle."""
    resources = [subscription_resource(row) for row in rows]
    return validated_bundle(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(resources),
            "entry": [
                {
                    "fullUrl": f"{RELAIS_FHIR_BASE}/Subscription/{r['id']}",
                    "resource": r,
                    "search": {"mode": "match"},
                }
                for r in resources
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
            # NdE per-patient Subscriptions are served at /notifications/nde/fhir/Subscription (/nde/fhir combined).
            "supportedProfile": [BACKPORT_SUBSCRIPTION, SUBSCRIPTION_PROFILE],
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
