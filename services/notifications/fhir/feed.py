"""FHIR shapes of the feed: a notification is a `Parameters` resource (id = notification id) whose `payload`
parameter holds the FHIR message Bundle (full detail) or one part per field of the minimised payload; the
feed is a `collection` Bundle of those, with the next cursor in `link[next]` and `meta.tag`."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.notifications.fhir.common import (
    CURSOR_TAG_SYSTEM,
    NOTIFICATION_PROFILE,
    ORGANISATION_SYSTEM,
    RECEIPT_PROFILE,
    full_url,
    instant,
    validated_bundle,
)
from shared.fhir.models import Parameters, to_json


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


def notification_parameters(n: Any, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A stored notification as an (unvalidated) Parameters dict; validated with its enclosing Bundle. `names`
    gives the organisations' display names, set beside their ids (organisation data: every detail level gets them)."""
    names = names or {}
    params: list[dict[str, Any]] = [
        {"name": "id", "valueString": n.id},
        {"name": "cursor", "valueString": str(n.seq)},
        {"name": "event", "valueCode": n.event},
        {"name": "role", "valueCode": n.role},
        {"name": "detail", "valueCode": n.detail},
        {"name": "recipient", "valueIdentifier": _org(n.recipient_org_id)},
    ]
    if n.recipient_org_id in names:
        params.append({"name": "recipient-name", "valueString": names[n.recipient_org_id]})
    if n.sender_org_id:
        params.append({"name": "sender", "valueIdentifier": _org(n.sender_org_id)})
        if n.sender_org_id in names:
            params.append({"name": "sender-name", "valueString": names[n.sender_org_id]})
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


def notification_resource(n: Any, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One notification as a validated Parameters resource (the answer to `$ack`)."""
    return to_json(Parameters.model_validate(notification_parameters(n, names)))


def feed_bundle(
    notifications: Sequence[Any],
    *,
    cursor: int,
    self_url: str,
    next_url: str,
    bundle_id: str | None = None,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return validated_bundle(
        {
            "resourceType": "Bundle",
            "id": bundle_id or str(uuid.uuid4()),
            "meta": {"tag": [{"system": CURSOR_TAG_SYSTEM, "code": str(cursor), "display": "next cursor"}]},
            "type": "collection",
            "timestamp": instant(datetime.now(UTC)),
            "link": [{"relation": "self", "url": self_url}, {"relation": "next", "url": next_url}],
            "entry": [
                {"fullUrl": full_url(n.id), "resource": notification_parameters(n, names)} for n in notifications
            ],
        }
    )


def webhook_body(notification: Any, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What a webhook receives: a one-entry collection Bundle, the same shape as a feed page."""
    return validated_bundle(
        {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "meta": {"tag": [{"system": CURSOR_TAG_SYSTEM, "code": str(notification.seq)}]},
            "type": "collection",
            "timestamp": instant(datetime.now(UTC)),
            "entry": [{"fullUrl": full_url(notification.id), "resource": notification_parameters(notification, names)}],
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
    return validated_bundle(
        {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": "searchset",
            "total": len(entries),
            "link": [{"relation": "self", "url": self_url}],
            "entry": entries,
        }
    )
